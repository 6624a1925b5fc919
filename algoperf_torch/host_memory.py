"""Keep freed host memory in the process, so a CPU training step stops paying page faults.

glibc's ``malloc`` hands an allocation above its mmap threshold (dynamic, at most 32 MiB) to the
kernel with ``mmap`` and returns it on ``free``, and trims the top of the heap back to the kernel
once more than ``M_TRIM_THRESHOLD`` is free there. A CPU training step allocates and frees the
same activation-sized buffers every step, so every step the kernel maps and zero-fills them
again: measured on ResNet-50 at batch 8 on 2 cores (``benchmarks/bench_steps.py``), ~130,000 minor
page faults and ~0.25 s of system time a step, none after ``retain_freed_memory()``.

The cost: the process's resident memory stays at its high-water mark instead of falling back
between steps. The trial's ``retain_host_memory: false`` leaves glibc's defaults alone. Other C
libraries (musl, macOS) are left alone too.

    python -m pytest tests/test_host_memory.py
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# <malloc.h> parameter numbers (glibc).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit (4 MiB * sizeof(long)); above it
# mallopt refuses the value
TRIM_THRESHOLD = 2**31 - 1  # an int: never trim in practice


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has mallopt as a no-op)
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the processes it forks
    later, e.g. data-loader workers). True if glibc took both settings."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
