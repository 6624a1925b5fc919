"""Rows per second of the Criteo 1TB setup (raw TSV -> chunks) and of the training loader.

The loader reads the prepared ``day_{d}_{NN}.npy`` chunks (memory-mapped) and cuts batches; it
is timed with 1 process and with several processes reading their rank slices at once (as the
ranks of a multi-GPU run do). The reference consumes about 300,000 rows/s in all (global batch
262,144 at ~0.9 s per step on 4 A100s, WORKLOADS.md §14). Without ``--data-dir`` a temporary
prepared dataset of random rows is written first (so its pages are in the page cache: the
figures are the loader's, not the disk's). ``--setup-lines`` also times the setup on a
generated raw day file.

    python benchmarks/bench_criteo_loader.py --rows 200000 --files 8 --setup-lines 200000
    python benchmarks/bench_criteo_loader.py --data-dir ~/data --batch-size 32768 --ranks 1 4 8
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time

import numpy as np

from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.criteo1tb import data as criteo
from algoperf_torch.workloads.criteo1tb.hashing import ROW_WIDTH


def write_random_dataset(root: str, files: int, rows: int) -> None:
    """``files`` train chunks of ``rows`` random prepared rows, and their index."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    names = {}
    for k in range(files):
        name = criteo.chunk_name(k % 23, k // 23)
        np.save(os.path.join(root, name + ".npy"), rng.random((rows, ROW_WIDTH), np.float32))
        names[name] = rows
    with open(os.path.join(root, criteo.INDEX_FILE), "w") as f:
        json.dump({"files": names}, f)


def loader_rows_per_s(args: tuple) -> float:
    data_dir, batch, rank, world, seconds = args
    request = DataRequest("train", data_dir, batch, seed=0, rank=rank, world_size=world)
    it = criteo.input_iterator(load_config("criteo1tb"), request)
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = next(it)
        n += len(b["targets"])
    return n / (time.perf_counter() - t0)


def time_loader(data_dir: str, batch: int, ranks: list[int], seconds: float) -> None:
    for world in ranks:
        jobs = [(data_dir, batch, r, world, seconds) for r in range(world)]
        if world == 1:
            rates = [loader_rows_per_s(jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(world) as pool:
                rates = pool.map(loader_rows_per_s, jobs)
        print(
            f"loader: {world} process(es), batch {batch}/process: "
            f"{sum(rates):,.0f} rows/s in all, {min(rates):,.0f}-{max(rates):,.0f} per process"
        )


def time_setup(tmp: str, lines: int) -> None:
    from algoperf_torch.data.criteo1tb import prepare_day

    rng = random.Random(0)

    def line() -> str:
        dense = [
            rng.choice(["", str(rng.randint(0, 20)), str(rng.randint(0, 5000))]) for _ in range(13)
        ]
        cats = []
        for i in range(26):
            # The 40M-bucket columns of the real logs have many distinct values, the rest few.
            distinct = 10**6 if i in (0, 9, 19, 20, 21) else 10 ** rng.randint(1, 4)
            cats.append("" if rng.random() < 0.05 else f"{rng.randrange(distinct):08x}")
        return "\t".join([str(int(rng.random() < 0.03)), *dense, *cats])

    raw = os.path.join(tmp, "day_0.gz")
    with gzip.open(raw, "wt", compresslevel=1) as f:
        for _ in range(lines):
            f.write(line() + "\n")
    out = os.path.join(tmp, "setup_out")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    info = prepare_day(0, raw, out, 5_000_000)
    dt = time.perf_counter() - t0
    print(
        f"setup: {info['lines']:,} raw lines in {dt:.1f} s: {info['lines'] / dt:,.0f} rows/s (1 process)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="a prepared dataset (default: a temporary random one)")
    p.add_argument("--files", type=int, default=8, help="temporary dataset: chunk files")
    p.add_argument("--rows", type=int, default=200_000, help="temporary dataset: rows per file")
    p.add_argument("--batch-size", type=int, default=8192, help="rows per batch per process")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="process counts")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per reading")
    p.add_argument("--setup-lines", type=int, default=0, help="also time the setup on N lines")
    p.add_argument("--tmp-dir", default=None, help="where temporary files go")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = os.path.join(tmp, "data")
            write_random_dataset(os.path.join(data_dir, "criteo1tb"), args.files, args.rows)
        time_loader(data_dir, args.batch_size, args.ranks, args.seconds)
        if args.setup_lines:
            time_setup(tmp, args.setup_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
