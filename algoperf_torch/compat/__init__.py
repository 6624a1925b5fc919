"""Stand-ins for the reference packages that published submissions import.

A published AlgoPerf PyTorch submission imports ``algoperf.spec`` and
``algoperf.pytorch_utils.pytorch_setup`` (older ones: ``algorithmic_efficiency.*``) and nothing
else of the reference (RULES.md §1.3). ``install()`` registers modules under both names in
``sys.modules`` — only names not already importable — so such a file runs unmodified without
the real packages (which would pull in JAX and TensorFlow).

    python -m algoperf_torch optimizer=file optimizer.path=my_submission.py
"""

from __future__ import annotations

import importlib.util
import sys
import types

PACKAGE_NAMES = ("algoperf", "algorithmic_efficiency")


def install() -> None:
    """Make ``<pkg>.spec`` and ``<pkg>.pytorch_utils`` importable for both package names."""
    from algoperf_torch.compat import pytorch_utils, spec

    for name in PACKAGE_NAMES:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        package = types.ModuleType(name)
        package.__path__ = []  # a package, so "from algoperf import spec" works
        package.spec = spec
        package.pytorch_utils = pytorch_utils
        sys.modules[name] = package
        sys.modules[f"{name}.spec"] = spec
        sys.modules[f"{name}.pytorch_utils"] = pytorch_utils
