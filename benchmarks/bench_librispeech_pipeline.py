"""LibriSpeech loader throughput: utterances/s of the training pipeline, on generated data.

Writes a prepared split of random int16 "speech" with LibriSpeech's lengths (uniform 2-20 s,
~11 s on average; transcripts of 20-150 ids) in the format of ``data.py`` and reads training
batches through the real ``input_iterator`` (memory map -> int16 batch -> float32 batch and
paddings), with 0 workers (the main process: one core) and with ``--workers``.

    python benchmarks/bench_librispeech_pipeline.py [--utterances 512] [--batch 32] [--batches 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time

import numpy as np


def write_split(root: str, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "librispeech", "train-clean-100")
    os.makedirs(folder)
    for name in ("train-clean-360", "train-other-500"):
        os.makedirs(os.path.join(root, "librispeech", name))
        _write(os.path.join(root, "librispeech", name), np.zeros(0, np.int64), [], rng)
    open(os.path.join(root, "librispeech", "spm_model.vocab"), "wb").close()
    lengths = rng.integers(32_000, 320_001, n)
    _write(folder, lengths, [rng.integers(3, 1024, rng.integers(20, 151)) for _ in range(n)], rng)


def _write(folder: str, lengths: np.ndarray, targets: list, rng) -> None:
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    audio = rng.integers(-3000, 3000, int(lengths.sum()), dtype=np.int16)
    audio.tofile(os.path.join(folder, "audio.int16"))
    ids = [np.append(t, 2) for t in targets]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in ids])]).astype(np.int64)
    np.savez(
        os.path.join(folder, "index.npz"),
        utterance_ids=np.array([f"u{i}" for i in range(len(lengths))], dtype=str),
        audio_start=starts,
        audio_length=lengths.astype(np.int64),
        target_offsets=offsets,
        targets=np.concatenate(ids).astype(np.int16) if ids else np.zeros(0, np.int16),
        transcripts=np.array(["X"] * len(lengths), dtype=str),
    )


def measure(root: str, batch: int, batches: int, workers: int) -> dict:
    import torch

    from algoperf_torch.spec import DataRequest
    from algoperf_torch.workloads.__main__ import load_config
    from algoperf_torch.workloads.librispeech_conformer.data import input_iterator

    config = dataclasses.replace(load_config("librispeech_conformer"))
    request = DataRequest("train", root, batch, seed=0, num_workers=workers)
    it = input_iterator(config, request)
    next(it)  # worker start-up and page cache warm-up
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        out = next(it)
        times.append(time.perf_counter() - start)
    assert out["inputs"][0].dtype == torch.float32
    median = statistics.median(times)
    return {"workers": workers, "ms_per_batch": 1000 * median, "utterances_per_s": batch / median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        write_split(root, args.utterances)
        rows = [measure(root, args.batch, args.batches, w) for w in (0, args.workers)]
    for row in rows:
        print(json.dumps(row))
    # The reference's consumption: step_hint steps in max_runtime, at the baseline batch 256.
    for name, steps, runtime in (("conformer", 76_000, 58_015), ("deepspeech", 38_400, 44_405)):
        print(f"reference {name}: {256 * steps / runtime:.0f} utterances/s (8 V100s)")


if __name__ == "__main__":
    main()
