"""Where a prepared dataset lives: ``<data_dir>/<folder>`` or ``data_dir`` itself.

Every workload's loader accepts either the common root of all datasets or the dataset's own
folder; it recognises the folder by a marker its setup command writes (an index, a manifest, the
tokenizer, the split folders).
"""

from __future__ import annotations

import os
from collections.abc import Callable


def prepared_root(
    data_dir: str,
    folder: str,
    markers: tuple[str, ...],
    exists: Callable[[str], bool] = os.path.isfile,
) -> str | None:
    """``data_dir/folder`` if one of ``markers`` is there, else ``data_dir`` if it is there, else
    None (the caller raises its dataset's error, naming how to prepare it)."""
    data_dir = os.path.expanduser(data_dir)
    for root in (os.path.join(data_dir, folder), data_dir):
        if any(exists(os.path.join(root, marker)) for marker in markers):
            return root
    return None
