"""WMT batches from the prepared ids (``python -m algoperf_torch.data wmt``): packed train rows,
padded eval rows, the reference's int64 keys and shapes [algoperf/workloads/wmt/input_pipeline.py].

All splits drop pairs whose longer side exceeds ``max_length`` (256) ids, EOS included.

Train: an endless stream of examples (epoch ``e`` is a permutation of the filtered train pairs
drawn from ``numpy.random.default_rng([seed, e])``), cut into blocks of ``pack_block`` (256)
consecutive examples, each block packed on its own exactly as the reference's ``pack_dataset``:
greedily in order, an example joins the current row if its inputs and its targets both still
fit, else the row is emitted (zero-padded) and a new one starts; a block's last row is always
emitted. An example's length is its count of non-zero ids (an ``<unk>`` = 0 inside it costs that
many trailing ids: the reference's quirk). ``*_position`` restarts at 0 per example;
``*_segmentation`` = cumsum(position == 0) · (id != 0). Rows are batched globally; each rank takes
its contiguous slice. The state is (block index, rows of it already used).

Eval (``eval_train``, ``validation``, ``test``): unpacked rows padded to ``max_length`` with 0,
``weights`` = targets > 0, this rank's contiguous shard, once. ``eval_train`` is the head of the
(fixed-order) train split, which the setup already shuffled.

    python -m pytest tests/test_wmt_data.py
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from algoperf_torch.pipelines.prepared import prepared_root
from algoperf_torch.pipelines.state import (
    PipelineStateError,
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
    to_device,
)
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig

FOLDER = "wmt"
TOKENIZER = "wmt_sentencepiece_model"


def wmt_root(data_dir: str) -> str:
    """``<data_dir>/wmt`` (or ``data_dir`` itself when it is that folder)."""
    root = prepared_root(data_dir, FOLDER, ("manifest.json",))
    if root is not None:
        return root
    data_dir = os.path.expanduser(data_dir)
    raise FileNotFoundError(
        f"no prepared WMT data in {data_dir!r} (looked for {FOLDER}/manifest.json); run "
        f"python -m algoperf_torch.data wmt --data-dir {data_dir} --archives-dir <WMT archives>"
    )


def load_tokenizer(data_dir: str):
    import sentencepiece as spm

    path = os.path.join(wmt_root(data_dir), TOKENIZER)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; re-run python -m algoperf_torch.data wmt")
    return spm.SentencePieceProcessor(model_file=path)


class Corpus:
    """One prepared split: memory-mapped ids + offsets per side; ``pair(i)`` -> (inputs, targets)."""

    def __init__(self, root: str, split: str) -> None:
        self.sides = {}
        for side in ("inputs", "targets"):
            paths = [os.path.join(root, f"{split}_{side}{k}.npy") for k in ("", "_offsets")]
            for p in paths:
                if not os.path.isfile(p):
                    raise FileNotFoundError(
                        f"{p} is missing; re-run python -m algoperf_torch.data wmt to finish"
                    )
            try:
                ids, offsets = (np.load(p, mmap_mode="r") for p in paths)
            except ValueError as e:
                raise ValueError(f"{paths[0]}: not a readable .npy file ({e})") from None
            if ids.dtype != np.uint16 or offsets.dtype != np.int64 or offsets[-1] != len(ids):
                raise ValueError(
                    f"{paths[0]}: expected uint16 ids with int64 offsets ending at their length; "
                    "the file is corrupt, delete it and re-run the setup"
                )
            self.sides[side] = (ids, offsets)
        n = {len(o) - 1 for _, o in self.sides.values()}
        if len(n) != 1:
            raise ValueError(f"{root}/{split}: inputs and targets hold different pair counts")
        self.size = n.pop()

    def lengths(self, side: str) -> np.ndarray:
        return np.diff(self.sides[side][1])

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for side in ("inputs", "targets"):
            ids, offsets = self.sides[side]
            out.append(np.asarray(ids[offsets[i] : offsets[i + 1]], dtype=np.int64))
        return out[0], out[1]

    def kept(self, max_length: int) -> np.ndarray:
        """Indices of pairs whose longer side has at most ``max_length`` ids."""
        longest = np.maximum(self.lengths("inputs"), self.lengths("targets"))
        return np.flatnonzero(longest <= max_length)


def pack_block(examples: list[tuple[np.ndarray, np.ndarray]], length: int) -> dict[str, np.ndarray]:
    """Pack one block greedily, as the reference's ``_pack_with_tf_ops`` -> [rows, length] each."""
    rows: list[list[tuple[np.ndarray, np.ndarray]]] = []
    row: list[tuple[np.ndarray, np.ndarray]] = []
    used_in = used_tg = 0
    for inputs, targets in examples:
        # The reference measures an example by its non-zero count (the <unk> = 0 quirk).
        inputs = inputs[: int(np.count_nonzero(inputs))][:length]
        targets = targets[: int(np.count_nonzero(targets))][:length]
        if used_in + len(inputs) > length or used_tg + len(targets) > length:
            rows.append(row)
            row, used_in, used_tg = [], 0, 0
        row.append((inputs, targets))
        used_in, used_tg = used_in + len(inputs), used_tg + len(targets)
    rows.append(row)
    out = {}
    for k, side in enumerate(("inputs", "targets")):
        ids = np.zeros((len(rows), length), dtype=np.int64)
        pos = np.zeros_like(ids)
        for r, parts in enumerate(rows):
            seqs = [p[k] for p in parts]
            if seqs:
                flat = np.concatenate(seqs)
                ids[r, : len(flat)] = flat
                pos[r, : len(flat)] = np.concatenate([np.arange(len(s)) for s in seqs])
        out[side] = ids
        out[f"{side}_position"] = pos
        out[f"{side}_segmentation"] = np.cumsum(pos == 0, axis=1) * (ids != 0)
    return out


class PackedTrainBatches(Resumable):
    """Endless packed rows of the shuffled train split; this rank's slice of each global batch."""

    KEYS = (
        "inputs",
        "inputs_position",
        "inputs_segmentation",
        "targets",
        "targets_position",
        "targets_segmentation",
    )

    def __init__(self, corpus: Corpus, request: DataRequest, length: int, block: int) -> None:
        self.corpus, self.request, self.length, self.block = corpus, request, length, block
        self.kept = corpus.kept(length)
        if len(self.kept) == 0:
            raise ValueError(f"no train pair has at most {length} ids on each side")
        self.global_batch = request.batch_size * request.world_size
        self._fingerprint = fingerprint(
            "wmt_packed_train", request, num_pairs=int(len(self.kept)), length=length, block=block
        )
        self._epoch, self._perm = -1, None
        self.block_index, self.rows_used = 0, 0
        self._rows = None  # the packed rows of block ``block_index``

    def _example(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, pos = divmod(j, len(self.kept))
        if epoch != self._epoch:
            rng = np.random.default_rng([self.request.seed, epoch])
            self._epoch, self._perm = epoch, rng.permutation(len(self.kept))
        return self.corpus.pair(int(self.kept[self._perm[pos]]))

    def _pack(self, index: int) -> dict[str, np.ndarray]:
        start = index * self.block
        return pack_block([self._example(j) for j in range(start, start + self.block)], self.length)

    def _take_rows(self, n: int) -> dict[str, np.ndarray]:
        parts = {k: [] for k in self.KEYS}
        while n:
            if self._rows is None:
                self._rows = self._pack(self.block_index)
            available = len(self._rows["inputs"]) - self.rows_used
            take = min(n, available)
            for k in self.KEYS:
                parts[k].append(self._rows[k][self.rows_used : self.rows_used + take])
            self.rows_used += take
            n -= take
            if self.rows_used == len(self._rows["inputs"]):
                self.block_index, self.rows_used, self._rows = self.block_index + 1, 0, None
        return {k: np.concatenate(v) for k, v in parts.items()}

    def __next__(self) -> Batch:
        rows = self._take_rows(self.global_batch)
        lo = self.request.rank * self.request.batch_size
        batch = {k: torch.from_numpy(v[lo : lo + self.request.batch_size]) for k, v in rows.items()}
        batch["weights"] = (batch["targets"] > 0).to(torch.int64)
        return to_device(batch, self.request.device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": dict(self._fingerprint),
            "block_index": self.block_index,
            "rows_used": self.rows_used,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.block_index, self.rows_used = int(state["block_index"]), int(state["rows_used"])
        self._rows = None
        if self.rows_used and self.rows_used >= len(self._pack(self.block_index)["inputs"]):
            raise PipelineStateError(f"rows_used={self.rows_used} is past its block's rows")


class PaddedEvalBatches(Resumable):
    """Unpacked rows padded to ``length`` with ``weights``: this rank's shard, once."""

    def __init__(self, corpus: Corpus, indices: np.ndarray, request: DataRequest, length: int):
        self.corpus, self.indices, self.request, self.length = corpus, indices, request, length
        self.shard = eval_shard(len(indices), request.rank, request.world_size)
        self.next_start = self.shard.start
        self._fingerprint = fingerprint(
            "wmt_eval", request, num_examples=int(len(indices)), length=length
        )

    def __next__(self) -> Batch:
        start = self.next_start
        if start >= self.shard.stop:
            raise StopIteration
        stop = min(start + self.request.batch_size, self.shard.stop)
        self.next_start = stop
        batch = {
            k: torch.zeros(stop - start, self.length, dtype=torch.int64)
            for k in ("inputs", "targets")
        }
        for r, i in enumerate(self.indices[start:stop]):
            for key, ids in zip(("inputs", "targets"), self.corpus.pair(int(i))):
                batch[key][r, : len(ids)] = torch.from_numpy(ids)
        batch["weights"] = (batch["targets"] > 0).to(torch.int64)
        return to_device(batch, self.request.device)

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "next_start": self.next_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.next_start = int(state["next_start"])


def input_iterator(config: WorkloadConfig, request: DataRequest) -> Resumable:
    """The batches of ``request.split`` from ``<data_dir>/wmt``."""
    root = wmt_root(request.data_dir)
    length, block = int(config.data["max_length"]), int(config.data["pack_block"])
    corpus = Corpus(root, "train" if request.split in ("train", "eval_train") else request.split)
    if request.split == "train":
        return PackedTrainBatches(corpus, request, length, block)
    kept = corpus.kept(length)
    if request.num_examples is not None:
        kept = kept[: request.num_examples]
    return PaddedEvalBatches(corpus, kept, request, length)
