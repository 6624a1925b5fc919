"""finewebedu_lm input pipeline: 1,025-token windows of memory-mapped GPT-2 token files.

Reads ``<data_dir>/finewebedu_lm/{train,val}.bin`` (flat uint16 token streams) and ``meta.json``
written by ``python -m algoperf_torch.data finewebedu_lm``. As the reference's
[algoperf/workloads/finewebedu_lm/input_pipeline.py @a6ce1da7] (WORKLOADS.md §13.4):

- the stream is cut into non-overlapping windows of ``seq_len + 1`` tokens (remainder dropped);
  ``inputs`` = w[:-1] as int32, ``targets`` = w[1:] as int64, both [B, seq_len];
- ``train`` windows pass through a shuffle buffer of ``data.shuffle_buffer`` (1,000) windows, so
  the order stays close to the stored one (the stored document order is already shuffled by
  the setup), endlessly, epoch after epoch; batches carry ``weights: None``;
- ``eval_train`` (the first windows of ``train``) and ``validation`` (of ``val``) are read in
  order: ceil(num_examples / global batch) global batches, as the reference's
  ``take(num_batches)``, each rank a contiguous shard of those windows (every window once across
  ranks, unlike the reference's multi-GPU quirk, §13.5); a rank's short last batch is padded to
  full size with token 0 and masked by ``weights`` [B, seq_len] float32 (the reference pads with
  −1, which its own embedding would reject).

Every rank runs the same shuffle stream (one numpy PCG64 seeded by the data seed) and takes its
slice of each global batch, so N ranks see what one process would. The state is the stream's
position: epoch, next stored window, the buffer's content and the generator's state. Reading is
a gather from the memory map in the calling process (``data.num_workers`` is not used): about
36,000 windows/s on one core (``benchmarks/bench_finewebedu_lm_pipeline.py``), where a 4xA100
step of 64 windows every 0.41 s consumes about 160.

    python -m algoperf_torch workload=finewebedu_lm data.data_dir=~/data
    python -m pytest tests/test_finewebedu_lm_data.py
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from algoperf_torch.pipelines.state import (
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
)
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig

FOLDER = "finewebedu_lm"
META = "meta.json"
SPLIT_FILE = {"train": "train", "eval_train": "train", "validation": "val"}
"""Data split -> stored split, as the reference's ``TFDS_SPLIT_NAME``; there is no test split."""
SETUP_HINT = "prepare it with: python -m algoperf_torch.data finewebedu_lm --data-dir {}"


def read_meta(data_dir: str) -> dict[str, Any]:
    """The setup's ``meta.json`` (token counts, vocabulary, EOS id)."""
    path = os.path.join(data_dir, FOLDER, META)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"finewebedu_lm: {path} is missing (an unprepared or unfinished setup); "
            + SETUP_HINT.format(data_dir)
        )
    with open(path) as f:
        return json.load(f)


def open_windows(data_dir: str, stored_split: str, window: int, vocab_size: int) -> np.ndarray:
    """The split's token file as a read-only [num_windows, window] uint16 memory map."""
    meta = read_meta(data_dir)
    path = os.path.join(data_dir, FOLDER, f"{stored_split}.bin")
    if stored_split not in meta.get("splits", {}):
        raise FileNotFoundError(f"finewebedu_lm: {path} is not listed in {META}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"finewebedu_lm: {path} is missing; " + SETUP_HINT.format(data_dir))
    tokens = int(meta["splits"][stored_split]["tokens"])
    size = os.path.getsize(path)
    if size != 2 * tokens:
        raise ValueError(
            f"finewebedu_lm: {path} has {size} bytes; {META} says {tokens} uint16 tokens "
            f"({2 * tokens} bytes): the file is truncated or from another setup, rerun the setup"
        )
    if int(meta["vocab_size"]) > vocab_size:
        raise ValueError(
            f"finewebedu_lm: the tokenizer of {path} has {meta['vocab_size']} tokens, more than "
            f"the model's vocab_size {vocab_size}"
        )
    if tokens < window:
        raise ValueError(f"finewebedu_lm: {path} holds {tokens} tokens, less than one window")
    flat = np.memmap(path, dtype=np.uint16, mode="r", shape=(tokens,))
    return flat[: tokens // window * window].reshape(-1, window)


def to_batch(windows: np.ndarray, device: torch.device) -> Batch:
    """[B, L+1] uint16 windows -> ``inputs`` int32 / ``targets`` int64 [B, L] on ``device``."""
    w = torch.from_numpy(windows.astype(np.int64))
    batch = {"inputs": w[:, :-1].to(torch.int32), "targets": w[:, 1:].contiguous()}
    pin = device.type == "cuda"
    return {
        k: (v.pin_memory() if pin else v).to(device, non_blocking=pin) for k, v in batch.items()
    }


class ShuffleBuffer:
    """tf.data-style shuffle over window indices 0..n-1, repeated: a buffer of ``size`` indices
    filled in stored order; each draw takes a uniformly chosen one and refills from the stream.
    At the end of an epoch the buffer drains, then the next epoch starts over."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"data.shuffle_buffer={size}; expected a positive integer")
        self.n, self.size = n, size
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.epoch, self.next_read, self.buffer = 0, 0, []

    def draw(self) -> int:
        while len(self.buffer) < self.size and self.next_read < self.n:
            self.buffer.append(self.next_read)
            self.next_read += 1
        if not self.buffer:  # the epoch is drained: start the next one
            self.epoch, self.next_read = self.epoch + 1, 0
            return self.draw()
        i = int(self.rng.integers(len(self.buffer)))
        self.buffer[i], self.buffer[-1] = self.buffer[-1], self.buffer[i]
        return self.buffer.pop()

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "next_read": self.next_read,
            "buffer": torch.tensor(self.buffer, dtype=torch.int64),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.next_read = int(state["epoch"]), int(state["next_read"])
        self.buffer = [int(i) for i in state["buffer"].tolist()]
        self.rng.bit_generator.state = dict(state["rng"])


class TrainWindows(Resumable):
    """Endless shuffled batches: this rank's slice of each global batch of windows."""

    def __init__(self, windows: np.ndarray, request: DataRequest, buffer_size: int) -> None:
        self.windows, self.request = windows, request
        self.global_batch = request.batch_size * request.world_size
        self.stream = ShuffleBuffer(len(windows), buffer_size, request.seed)
        self._fingerprint = fingerprint(
            "finewebedu_lm_train", request, num_windows=len(windows), shuffle_buffer=buffer_size
        )

    def __next__(self) -> Batch:
        picks = [self.stream.draw() for _ in range(self.global_batch)]
        start = self.request.rank * self.request.batch_size
        mine = np.asarray(picks[start : start + self.request.batch_size])
        batch = to_batch(self.windows[mine], self.request.device)
        batch["weights"] = None  # the reference's train batches: every token counts
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), **self.stream.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.stream.load_state_dict(state)


class EvalWindows(Resumable):
    """This rank's shard of the first ``count`` windows, in order, in full padded batches."""

    def __init__(self, windows: np.ndarray, request: DataRequest, count: int) -> None:
        self.windows, self.request = windows, request
        self.shard = eval_shard(count, request.rank, request.world_size)
        self.next_start = self.shard.start
        self._fingerprint = fingerprint("finewebedu_lm_eval", request, num_windows=count)

    def __next__(self) -> Batch:
        start = self.next_start
        if start >= self.shard.stop:
            raise StopIteration
        stop = min(start + self.request.batch_size, self.shard.stop)
        self.next_start = stop
        rows = np.zeros((self.request.batch_size, self.windows.shape[1]), dtype=np.uint16)
        rows[: stop - start] = self.windows[start:stop]
        batch = to_batch(rows, self.request.device)
        weights = torch.zeros(batch["targets"].shape, dtype=torch.float32)
        weights[: stop - start] = 1.0
        batch["weights"] = weights.to(self.request.device)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "next_start": self.next_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.next_start = int(state["next_start"])


def eval_window_count(num_examples: int | None, global_batch: int, available: int) -> int:
    """ceil(num_examples / global batch) global batches of windows (the reference's
    ``take(num_batches)``: 391 x 256 = 100,096 for validation), at most what the split holds."""
    if num_examples is None:
        return available
    return min(math.ceil(num_examples / global_batch) * global_batch, available)


def input_iterator(config: WorkloadConfig, request: DataRequest) -> TrainWindows | EvalWindows:
    """The batches of ``request.split`` (train, eval_train or validation)."""
    if request.split not in SPLIT_FILE:
        raise ValueError(
            f"finewebedu_lm has no {request.split!r} split; splits: {', '.join(SPLIT_FILE)}"
        )
    seq_len = int(config.model["seq_len"])
    windows = open_windows(
        request.data_dir, SPLIT_FILE[request.split], seq_len + 1, int(config.model["vocab_size"])
    )
    if request.split == "train":
        global_batch = request.batch_size * request.world_size
        if global_batch > len(windows):
            raise ValueError(
                f"global batch size {global_batch} exceeds the {len(windows)} training windows"
            )
        return TrainWindows(windows, request, int(config.data["shuffle_buffer"]))
    global_batch = request.batch_size * request.world_size
    count = eval_window_count(request.num_examples, global_batch, len(windows))
    return EvalWindows(windows, request, count)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """Random token windows of the real shapes and dtypes: ids in [0, vocab_size)."""
    seq_len, vocab = int(config.model["seq_len"]), int(config.model["vocab_size"])
    w = torch.randint(0, vocab, (batch_size, seq_len + 1), generator=gen)
    return {"inputs": w[:, :-1].to(torch.int32), "targets": w[:, 1:].contiguous()}
