"""fastMRI input pipeline (placeholder until the HDF5 reader lands)."""

from __future__ import annotations

import torch

from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig

SIZE = 320


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """Batches like the real ones: normalised images clipped to [-6, 6] and per-slice stats of
    the magnitude of real knee scans (mean ~1e-5..1e-4, volume max ~10 std above the mean)."""
    shape = (batch_size, SIZE, SIZE)
    targets = torch.randn(shape, generator=gen).clamp_(-6, 6)
    inputs = (targets + 0.3 * torch.randn(shape, generator=gen)).clamp_(-6, 6)
    mean = 1e-5 + 9e-5 * torch.rand(batch_size, generator=gen)
    std = mean * (0.5 + torch.rand(batch_size, generator=gen))
    volume_max = mean + std * (8 + 4 * torch.rand(batch_size, generator=gen))
    return {
        "inputs": inputs,
        "targets": targets,
        "mean": mean,
        "std": std,
        "volume_max": volume_max,
    }


def input_iterator(config: WorkloadConfig, request: DataRequest):
    raise NotImplementedError("the fastMRI HDF5 pipeline is not built yet; use data=synthetic")
