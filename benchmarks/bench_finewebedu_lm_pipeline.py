"""Windows per second of the finewebedu_lm train pipeline on one core (memory-mapped tokens).

Writes a token file of random uint16 ids (``--tokens``, default 200 M = 400 MB, in a temporary
folder unless ``--data-dir`` holds a prepared dataset), then times ``--batches`` train batches of
``--batch-size`` windows after a warm-up: the shuffle buffer's draws, the gather from the memory
map and the int32/int64 conversion, as a trial reads them. With a cold page cache the first pass
reads from disk; the figure printed is for the second pass (warm cache), as a trial's later
epochs and a machine with enough RAM for the 18 GB train file would see.

    python benchmarks/bench_finewebedu_lm_pipeline.py
    python benchmarks/bench_finewebedu_lm_pipeline.py --data-dir ~/data --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.finewebedu_lm import data


def fake_dataset(folder: str, tokens: int) -> None:
    out = os.path.join(folder, data.FOLDER)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(os.path.join(out, "train.bin"), "wb") as f:
        for start in range(0, tokens, 1 << 24):
            f.write(rng.integers(0, 50257, min(1 << 24, tokens - start), np.uint16).tobytes())
    meta = {"vocab_size": 50257, "splits": {"train": {"tokens": tokens}}}
    with open(os.path.join(out, data.META), "w") as f:
        json.dump(meta, f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="a prepared dataset (default: a fake one)")
    p.add_argument("--tokens", type=int, default=200_000_000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or tmp
        if args.data_dir is None:
            fake_dataset(tmp, args.tokens)
        request = DataRequest("train", data_dir, args.batch_size, seed=0)
        it = data.input_iterator(load_config("finewebedu_lm"), request)
        for _ in range(20):
            next(it)
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.batches):
                next(it)
            rates.append(args.batches * args.batch_size / (time.perf_counter() - start))
    print(
        f"finewebedu_lm train pipeline, batch {args.batch_size}, one thread: median "
        f"{statistics.median(rates):,.0f} windows/s (range {min(rates):,.0f}-{max(rates):,.0f}; "
        f"{statistics.median(rates) * 1024:,.0f} target tokens/s)"
    )


if __name__ == "__main__":
    main()
