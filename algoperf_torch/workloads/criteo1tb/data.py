"""Criteo 1TB input pipeline over the prepared chunk files (WORKLOADS.md §2.4).

``python -m algoperf_torch.data criteo1tb`` writes one memory-mappable ``day_{d}_{NN}.npy`` per
5,000,000-line chunk of the raw logs (float32 rows: label, 13 transformed dense features, 26
float32 bucket ids; see ``algoperf_torch/data/criteo1tb.py``). This module reads them as the
reference's TensorFlow pipeline reads its ``day_{d}_{NN}`` text files
[algoperf/workloads/criteo1tb/input_pipeline.py]:

- train: files ``day_0_*`` ... ``day_22_*``, shuffled at the file level once per pass (no line
  shuffle), read sequentially, global batches across file boundaries, the last partial batch of
  each pass dropped, endless. Each rank reads its own contiguous slice of every global batch, so
  the global batches are the same at any world size (no rank-0 broadcast).
- eval_train: the first ``num_examples`` rows of a file-shuffled train pass, re-drawn at every
  evaluation (the reference's ``take(...).repeat()`` re-shuffles the files on each eval).
- validation: ``day_23_19`` ... ``day_23_35``; test: ``day_23_00`` ... ``day_23_18``, in order.
- eval splits: this rank's contiguous share of the split's first ``num_examples`` rows, the last
  batch zero-padded to the full batch size with ``weights`` 0 on the padding.

Batches: ``inputs`` float32 [B, 39], ``targets`` float32 [B], ``weights`` float32 [B] (ones on
train), the reference's keys and dtypes. The reference's second, unseeded file shuffle cannot be
reproduced; here each pass's file order is a permutation drawn from (seed, pass).

    python -m algoperf_torch workload=criteo1tb data.data_dir=~/data
    python -m pytest tests/test_criteo_data.py
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from algoperf_torch.pipelines.prepared import prepared_root
from algoperf_torch.pipelines.state import (
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
    to_device,
)
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig
from algoperf_torch.workloads.criteo1tb.hashing import NUM_DENSE, ROW_WIDTH, VOCAB_SIZES

INDEX_FILE = "index.json"
"""Written last by the setup: {"files": {name: rows}, ...}; its presence means complete."""
TRAIN_DAYS = range(0, 23)
NUM_DAY_23_FILES = 36
NUM_TEST_FILES = NUM_DAY_23_FILES // 2 + 1  # day_23_00 .. day_23_18 [input_pipeline.py]
_EVAL_TRAIN_KEY = 0x5EED_E7A1


class CriteoDataError(FileNotFoundError):
    """The prepared Criteo files are missing, incomplete or malformed."""


def _hint(data_dir: str) -> str:
    return (
        "Prepare them with: python -m algoperf_torch.data criteo1tb "
        f"--data-dir {data_dir} --archives-dir <folder with day_0.gz ... day_23.gz>"
    )


def criteo_root(data_dir: str) -> str:
    """``data_dir/criteo1tb`` if it holds the index, else ``data_dir`` itself."""
    root = prepared_root(data_dir, "criteo1tb", (INDEX_FILE,))
    if root is not None:
        return root
    data_dir = os.path.expanduser(data_dir)
    raise CriteoDataError(
        f"no prepared Criteo 1TB data under {data_dir!r} (looked for criteo1tb/{INDEX_FILE} "
        f"and {INDEX_FILE}). {_hint(data_dir)}"
    )


def read_index(root: str) -> dict[str, int]:
    """File name (without ``.npy``) -> number of rows, from the setup's index."""
    path = os.path.join(root, INDEX_FILE)
    try:
        with open(path) as f:
            files = json.load(f)["files"]
        return {str(k): int(v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CriteoDataError(f"{path} is not a valid Criteo index ({e}). {_hint(root)}") from None


def chunk_name(day: int, chunk: int) -> str:
    return f"day_{day}_{chunk:02d}"


def split_files(index: Mapping[str, int], split: str) -> list[str]:
    """The chunk names of ``split`` in the reference's (sorted, unshuffled) order."""
    if split in ("train", "eval_train"):
        names = [n for n in index if int(n.split("_")[1]) in TRAIN_DAYS]
        return sorted(names, key=lambda n: tuple(int(p) for p in n.split("_")[1:]))
    chunks = range(0, NUM_TEST_FILES) if split == "test" else range(NUM_TEST_FILES, 36)
    return [chunk_name(23, c) for c in chunks if chunk_name(23, c) in index]


class ChunkReader:
    """Rows [start, stop) of the concatenation of ``names`` (memory-mapped, opened lazily)."""

    def __init__(self, root: str, index: Mapping[str, int], names: list[str]) -> None:
        self.root, self.names = root, list(names)
        self.sizes = [index[n] for n in self.names]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes, dtype=np.int64)]).tolist()
        self.total = int(self.offsets[-1])
        self._maps: dict[str, np.ndarray] = {}

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            path = os.path.join(self.root, name + ".npy")
            try:
                arr = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise CriteoDataError(f"cannot read {path} ({e}). {_hint(self.root)}") from None
            expected = (self._size_of(name), ROW_WIDTH)
            if arr.dtype != np.float32 or arr.shape != expected:
                raise CriteoDataError(
                    f"{path}: {arr.dtype} {arr.shape}, expected float32 {expected} as in "
                    f"{INDEX_FILE}. {_hint(self.root)}"
                )
            self._maps[name] = arr
        return self._maps[name]

    def _size_of(self, name: str) -> int:
        return self.sizes[self.names.index(name)]

    def read_into(self, out: np.ndarray, start: int) -> None:
        """Fill ``out`` ([n, ROW_WIDTH]) with rows start .. start + n of the stream."""
        pos, n = start, len(out)
        i = bisect.bisect_right(self.offsets, pos) - 1
        done = 0
        while done < n:
            arr = self._map(self.names[i])
            lo = pos - self.offsets[i]
            take = min(n - done, self.sizes[i] - lo)
            out[done : done + take] = arr[lo : lo + take]
            done, pos, i = done + take, pos + take, i + 1


def _permutation(n: int, seed: int, key: int) -> list[int]:
    gen = torch.Generator().manual_seed((seed * 1_000_003 + key) % (2**63))
    return torch.randperm(n, generator=gen).tolist()


def _batch(rows: np.ndarray, weights: np.ndarray) -> Batch:
    """Split prepared rows [B, 40] into the reference's batch dict (contiguous tensors)."""
    return {
        "inputs": torch.from_numpy(np.ascontiguousarray(rows[:, 1:])),
        "targets": torch.from_numpy(np.ascontiguousarray(rows[:, 0])),
        "weights": torch.from_numpy(weights),
    }


class TrainBatches(Resumable):
    """Endless file-shuffled passes; this rank's slice of each global batch."""

    def __init__(self, root: str, index: Mapping[str, int], request: DataRequest) -> None:
        self.root, self.index, self.request = root, index, request
        self.names = split_files(index, "train")
        if not self.names:
            raise CriteoDataError(f"no train chunks (day_0_* ... day_22_*) in {root}")
        self.global_batch = request.batch_size * request.world_size
        total = sum(index[n] for n in self.names)
        self.batches_per_pass = total // self.global_batch
        if self.batches_per_pass == 0:
            raise CriteoDataError(
                f"{total} train rows in {root} are fewer than one global batch "
                f"({self.global_batch})"
            )
        self.epoch, self.step = 0, 0
        self._reader: ChunkReader | None = None
        self._fingerprint = fingerprint("criteo1tb", request, files=len(self.names), rows=total)

    def _pass_reader(self) -> ChunkReader:
        if self._reader is None:
            order = _permutation(len(self.names), self.request.seed, self.epoch)
            self._reader = ChunkReader(self.root, self.index, [self.names[i] for i in order])
        return self._reader

    def __next__(self) -> Batch:
        if self.step >= self.batches_per_pass:  # a new pass, in a new file order
            self.epoch, self.step, self._reader = self.epoch + 1, 0, None
        b = self.request.batch_size
        rows = np.empty((b, ROW_WIDTH), dtype=np.float32)
        start = self.step * self.global_batch + self.request.rank * b
        self._pass_reader().read_into(rows, start)
        self.step += 1
        return to_device(_batch(rows, np.ones(b, dtype=np.float32)), self.request.device)

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "epoch": self.epoch, "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.epoch, self.step, self._reader = int(state["epoch"]), int(state["step"]), None


class EvalBatches(Resumable):
    """This rank's share of the first ``num_examples`` rows of ``names``, once, padded."""

    def __init__(
        self, root: str, index: Mapping[str, int], names: list[str], request: DataRequest
    ) -> None:
        self.request = request
        self.reader = ChunkReader(root, index, names)
        num = request.num_examples
        if num is None or num > self.reader.total:
            raise CriteoDataError(
                f"the {request.split} split has {self.reader.total} rows in {root} "
                f"({len(names)} chunk files), the workload evaluates {num}; prepare the whole "
                f"dataset, or set workload.num_{request.split}_examples to at most "
                f"{self.reader.total} for a partial one"
            )
        shard = eval_shard(num, request.rank, request.world_size)
        self.next_start, self.stop = shard.start, shard.stop
        self._fingerprint = fingerprint(
            "criteo1tb",
            request,
            num_examples=num,
            eval_index=_eval_index(request),
            files=len(names),
        )

    def __next__(self) -> Batch:
        if self.next_start >= self.stop:
            raise StopIteration
        b = self.request.batch_size
        n = min(b, self.stop - self.next_start)
        rows = np.zeros((b, ROW_WIDTH), dtype=np.float32)  # zero padding past n
        self.reader.read_into(rows[:n], self.next_start)
        weights = np.zeros(b, dtype=np.float32)
        weights[:n] = 1.0
        self.next_start += n
        return to_device(_batch(rows, weights), self.request.device)

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "next_start": self.next_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.next_start = int(state["next_start"])


def _eval_index(request: DataRequest) -> int:
    return int(request.eval_index)


def input_iterator(config: WorkloadConfig, request: DataRequest) -> TrainBatches | EvalBatches:
    """The ``StatefulIterator`` of ``request.split`` over the prepared chunk files."""
    root = criteo_root(request.data_dir)
    index = read_index(root)
    if request.split == "train":
        return TrainBatches(root, index, request)
    if request.split == "eval_train":
        names = split_files(index, "train")
        key = _EVAL_TRAIN_KEY + _eval_index(request)
        names = [names[i] for i in _permutation(len(names), request.seed, key)]
    elif request.split in ("validation", "test"):
        names = split_files(index, request.split)
    else:
        raise ValueError(
            f"unknown split {request.split!r}; expected train, eval_train, validation or test"
        )
    return EvalBatches(root, index, names, request)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """A batch of the real keys, shapes, dtypes and value ranges (float32 ids per column)."""
    counts = torch.randint(0, 1000, (batch_size, NUM_DENSE), generator=gen)
    dense = torch.log(counts.to(torch.float64) + 1).to(torch.float32)
    hi = torch.tensor(VOCAB_SIZES, dtype=torch.float64)
    ids = torch.floor(
        torch.rand(batch_size, len(VOCAB_SIZES), generator=gen, dtype=torch.float64) * hi
    )
    targets = (torch.rand(batch_size, generator=gen) < 0.03).to(torch.float32)  # ~3% clicks
    return {
        "inputs": torch.cat([dense, ids.to(torch.float32)], dim=1),
        "targets": targets,
        "weights": torch.ones(batch_size),
    }
