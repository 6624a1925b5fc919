"""fastMRI training-pipeline throughput: slices/s delivered by ``workloads/fastmri/data.py``.

Writes full-size single-coil volumes (k-space [slices, 640, 368] complex64 of noise, as
incompressible as real scans, 320x320 targets) and the slice index, then times the train
iterator (HDF5 read, mask, 640x368 inverse FFT, crop, normalise, collate) with the given workers
and batch size, several repeats; prints the median slices/s. The reference's baseline consumes
32 slices per step at about 0.24 s/step on 8 V100s (4,430 s budget / 18,094 step hint), i.e.
about 130 slices/s.

    python benchmarks/bench_fastmri_pipeline.py --volumes 4 --slices 32 --workers 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import h5py
import numpy as np
import torch

from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.fastmri import data as fastmri_data


def make_data(root: str, volumes: int, slices: int, width: int = 368) -> None:
    rng = np.random.default_rng(0)
    index = {}
    for split in ("knee_singlecoil_train", "knee_singlecoil_val"):
        os.makedirs(os.path.join(root, "fastmri", split), exist_ok=True)
        entries = []
        for v in range(volumes if split.endswith("train") else 1):
            name = f"file{v:07d}.h5"
            shape = (slices, 640, width)
            kspace = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * 1e-5
            target = rng.random((slices, 320, 320), dtype=np.float32) * 1e-4
            with h5py.File(os.path.join(root, "fastmri", split, name), "w") as f:
                f.create_dataset("kspace", data=kspace.astype(np.complex64))
                f.create_dataset("reconstruction_esc", data=target)
                f.attrs["max"] = float(target.max())
            entries.append([name, slices, width])
        index[split] = entries
    with open(os.path.join(root, "fastmri", "slice_index.json"), "w") as f:
        json.dump(index, f)


def slices_per_second(root: str, workers: int, batch: int, batches: int) -> float:
    config = load_config("fastmri")
    request = DataRequest("train", root, batch, seed=0, num_workers=workers)
    it = fastmri_data.input_iterator(config, request)
    next(it)  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volumes", type=int, default=4)
    p.add_argument("--slices", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        make_data(root, args.volumes, args.slices)
        rates = [
            slices_per_second(root, args.workers, args.batch_size, args.batches)
            for _ in range(args.repeats)
        ]
    print(
        f"fastMRI train pipeline, {args.workers} worker(s), batch {args.batch_size}: "
        f"{statistics.median(rates):.1f} slices/s median of {args.repeats} "
        f"({', '.join(f'{r:.1f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
