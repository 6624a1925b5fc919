"""torchrun / DDP setup returning a small ``DistInfo`` that is passed down; rank-0 helpers.

Nothing here runs at import time. Under ``torchrun`` (``LOCAL_RANK`` set) ``setup_distributed``
joins the process group: NCCL on CUDA, gloo on CPU.

    torchrun --standalone --nproc_per_node=2 -m algoperf_torch workload=digits max_steps=20
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda, but no CUDA device is available; use device=cpu")
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device={name!r}; expected one of auto, cpu, cuda")


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun, else a single process."""
    if "LOCAL_RANK" not in os.environ:
        return DistInfo(device=resolve_device(device))
    local_rank = int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device, local_rank)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev
    )


def teardown_distributed(info: DistInfo) -> None:
    if info.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensors: dict[str, torch.Tensor], info: DistInfo) -> dict[str, torch.Tensor]:
    """Sum each tensor across ranks (in place where possible); identity on one process."""
    if not info.is_distributed:
        return tensors
    out = {}
    for key in sorted(tensors):  # the same order on every rank
        t = tensors[key].detach().to(info.device, dtype=torch.float64).clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out[key] = t
    return out


def max_across_ranks(value: float, info: DistInfo) -> float:
    """The largest ``value`` over ranks (the reference's ``sync_ddp_time``)."""
    if not info.is_distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not info.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: object, info: DistInfo) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.is_distributed:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
