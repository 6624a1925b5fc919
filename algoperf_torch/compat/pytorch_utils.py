"""``algoperf.pytorch_utils`` as published submissions use it: ``pytorch_setup()``.

The reference computes this at import time in every module; here it is a function reading the
torchrun environment when called.
"""

from __future__ import annotations

import os

import torch


def pytorch_setup() -> tuple[bool, int, torch.device, int]:
    """``(use_ddp, rank, device, n_gpus)`` of this process, as the reference returns them."""
    use_ddp = "LOCAL_RANK" in os.environ
    rank = int(os.environ["LOCAL_RANK"]) if use_ddp else 0
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    n_gpus = torch.cuda.device_count()
    return use_ddp, rank, device, n_gpus
