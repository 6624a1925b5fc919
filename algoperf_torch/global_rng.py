"""The process-wide RNGs (torch CPU and CUDA, numpy's legacy global, Python's ``random``).

Training draws from them (dropout masks, submissions' own randomness), so a checkpoint saves
them and a resumed trial restores them. Evaluation runs at wall-clock moments (RULES.md §2.3)
that differ between an uninterrupted and a resumed run, so it must leave them untouched:
``isolated()`` restores them after each eval (a ``DataLoader`` built for eval, for one, draws
its base seed from the torch RNG).

States are plain data (tensors, ints, floats, tuples) that ``torch.load(weights_only=True)``
reads back: numpy's key array travels as an int64 tensor.

    python -m pytest tests/test_resume.py
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """The current states of every process-wide RNG, as plain data."""
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore(states: Mapping[str, Any]) -> None:
    """Set every process-wide RNG to ``states`` (from ``capture``)."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    random.setstate(_as_tuples(states["python"]))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise ValueError(
                f"the checkpoint holds CUDA RNG states of {len(cuda)} devices, this process sees "
                f"{torch.cuda.device_count()}: resume on the same number of visible devices"
            )
        torch.cuda.set_rng_state_all(cuda)


def _as_tuples(obj: Any) -> Any:
    # ``random.setstate`` wants (version, tuple of 625 ints, gauss); lists after a round trip.
    if isinstance(obj, list | tuple):
        return tuple(_as_tuples(x) for x in obj)
    return obj


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Run a block (an eval) without moving the process-wide RNGs."""
    saved = capture()
    try:
        yield
    finally:
        restore(saved)
