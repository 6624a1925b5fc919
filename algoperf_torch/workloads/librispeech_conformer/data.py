"""LibriSpeech input pipeline (Conformer and DeepSpeech): memory-mapped int16 audio -> batches.

Prepared format (written by ``python -m algoperf_torch.data librispeech``; see
``algoperf_torch/data/librispeech.py``)::

    D/librispeech/spm_model.vocab           SentencePiece unigram model (the reference's name)
    D/librispeech/<split>/audio.int16       every kept utterance's 16 kHz samples, raw int16
    D/librispeech/<split>/index.npz         per utterance, in sorted id order: utterance_ids,
                                            audio_start, audio_length (samples), target_offsets,
                                            targets (SentencePiece ids + EOS, concatenated),
                                            transcripts
    D/librispeech/<split>/info.json         counts (raw, kept, skipped) and the tokenizer's hash

``data_dir`` may also be the ``librispeech`` folder itself (the reference's ``--data_dir``).

Splits, as the reference [librispeech_pytorch/workload.py, input_pipeline.py; WORKLOADS.md §6.4]:
train = train-clean-100 + train-clean-360 + train-other-500 (shuffled, the last incomplete global
batch of an epoch dropped); eval_train = the first N of ``random.Random(seed).shuffle`` of the
train list; validation = dev-clean + dev-other; test = test-clean (in order, the last batch
smaller, never padded). Each batch is the reference's::

    inputs  = (audio [B, 320000] float32 int16-valued samples, audio_paddings [B, 320000], 1 = pad)
    targets = (ids [B, 256] float32, target_paddings [B, 256], 1 = pad)

Speed: loader workers gather int16 samples straight from the memory map into a shared-memory
batch (2 bytes a sample cross the process boundary, not 8 as float32 audio + paddings); the
float32 audio and both padding masks are made after the copy to the device.

Resumable (``spec.StatefulIterator``): the order is a pure function of (data seed, epoch): epoch
e's permutation is drawn from a generator seeded by (seed, e) and rank r takes slice r of each
global batch. Nothing else is random (SpecAugment draws in the model), so the state is the
number of batches handed out; a resumed iterator seeks its batch sampler there.

Differences from the reference, by design: the training order is our seeded per-epoch
permutation (the reference draws a ``RandomSampler`` from the torch global RNG, or uses
``DistributedSampler``); utterances are read in sorted id order (the reference's CSV order is
``os.listdir``'s, filesystem-dependent).

    python -m pytest tests/test_librispeech_data.py
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from algoperf_torch.pipelines.prepared import prepared_root
from algoperf_torch.pipelines.state import (
    PipelineStateError,
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
)
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig
from algoperf_torch.workloads.librispeech_conformer.metrics import (
    TOKENIZER_FILE,
    IdWords,
    SpeechMetrics,
    load_tokenizer,
)

AUDIO_FILE = "audio.int16"
INDEX_FILE = "index.npz"
EOS_ID = 2
"""SentencePiece's default ``</s>``: appended to every target (WORKLOADS.md §6.4)."""


class MissingLibriSpeechError(FileNotFoundError):
    """The prepared LibriSpeech files are missing; the message says how to prepare them."""


def _hint(data_dir: str) -> str:
    return (
        "Prepare LibriSpeech from the OpenSLR archives with: python -m algoperf_torch.data "
        f"librispeech --data-dir {data_dir} --archives-dir <folder with train-clean-100.tar.gz, "
        "train-clean-360.tar.gz, train-other-500.tar.gz, dev-clean.tar.gz, dev-other.tar.gz, "
        "test-clean.tar.gz>"
    )


def librispeech_root(data_dir: str) -> str:
    """``data_dir/librispeech`` if it holds the tokenizer, else ``data_dir`` itself."""
    root = prepared_root(data_dir, "librispeech", (TOKENIZER_FILE,))
    if root is not None:
        return root
    data_dir = os.path.expanduser(data_dir)
    raise MissingLibriSpeechError(
        f"no prepared LibriSpeech under {data_dir!r} (looked for librispeech/{TOKENIZER_FILE} "
        f"and {TOKENIZER_FILE}). {_hint(data_dir)}"
    )


class SplitFiles:
    """One prepared split (e.g. ``dev-clean``): its index in memory, its audio memory-mapped.

    The memory map is opened on first use in each process (a worker opens its own).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        path = os.path.join(folder, INDEX_FILE)
        if not os.path.isfile(path):
            raise MissingLibriSpeechError(
                f"LibriSpeech split folder {folder!r} has no {INDEX_FILE}"
            )
        with np.load(path, allow_pickle=False) as index:
            self.utterance_ids = index["utterance_ids"]
            self.audio_start = index["audio_start"].astype(np.int64)
            self.audio_length = index["audio_length"].astype(np.int64)
            self.target_offsets = index["target_offsets"].astype(np.int64)
            self.targets = index["targets"].astype(np.int32)
            self.transcripts = index["transcripts"]
        self._audio: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.audio_length)

    @property
    def audio(self) -> np.ndarray:
        if self._audio is None:
            path = os.path.join(self.folder, AUDIO_FILE)
            self._audio = np.memmap(path, dtype="<i2", mode="r")
            end = int((self.audio_start + self.audio_length).max(initial=0))
            if end > len(self._audio):
                raise ValueError(
                    f"{path}: {len(self._audio)} samples, the index needs {end} (truncated file; "
                    "delete the split folder and rerun the setup)"
                )
        return self._audio

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_audio": None}  # never pickle the mapped samples


@functools.lru_cache(maxsize=16)
def load_split(folder: str) -> SplitFiles:
    return SplitFiles(folder)


class SpeechDataset(Dataset):
    """Several splits end to end; ``dataset[list of indices]`` is one collated batch.

    A batch is (audio int16 [B, max_samples], audio lengths [B], ids int32 [B, max_tokens],
    target lengths [B]); in a loader worker it is written straight into shared memory.
    """

    def __init__(self, splits: list[SplitFiles], max_samples: int, max_tokens: int) -> None:
        self.splits = splits
        self.starts = np.cumsum([0] + [len(s) for s in splits])
        self.max_samples, self.max_tokens = max_samples, max_tokens

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, i: int) -> tuple[SplitFiles, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.splits[k], i - int(self.starts[k])

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        b = len(indices)
        audio = torch.zeros(b, self.max_samples, dtype=torch.int16)
        ids = torch.zeros(b, self.max_tokens, dtype=torch.int32)
        if get_worker_info() is not None:
            audio.share_memory_()
            ids.share_memory_()
        audio_np, ids_np = audio.numpy(), ids.numpy()
        audio_len = torch.empty(b, dtype=torch.int64)
        ids_len = torch.empty(b, dtype=torch.int64)
        for row, i in enumerate(indices):
            split, j = self.locate(int(i))
            start, n = split.audio_start[j], split.audio_length[j]
            t0, t1 = split.target_offsets[j], split.target_offsets[j + 1]
            if n > self.max_samples or t1 - t0 > self.max_tokens:
                raise ValueError(
                    f"{split.folder}: utterance {split.utterance_ids[j]} has {n} samples and "
                    f"{t1 - t0} ids; at most {self.max_samples} and {self.max_tokens} fit a batch"
                )
            audio_np[row, :n] = split.audio[start : start + n]
            ids_np[row, : t1 - t0] = split.targets[t0:t1]
            audio_len[row], ids_len[row] = int(n), int(t1 - t0)
        return audio, audio_len, ids, ids_len


def reference_batch(
    audio: torch.Tensor, audio_len: torch.Tensor, ids: torch.Tensor, ids_len: torch.Tensor
) -> Batch:
    """The reference's float32 batch from gathered int16 audio and lengths (on any device)."""
    if audio.device.type == "cpu":
        # numpy's allocations reuse freed memory; fresh torch CPU tensors of this size page-fault
        # on every batch (measured 190 ms -> 30 ms for 32 x 320,000 samples on one core).
        return {
            "inputs": (_np_float(audio), _np_paddings(audio_len, audio.shape[1])),
            "targets": (_np_float(ids), _np_paddings(ids_len, ids.shape[1])),
        }
    frames = torch.arange(audio.shape[1], device=audio.device)
    audio_paddings = (frames[None, :] >= audio_len[:, None]).float()  # [B, T]
    positions = torch.arange(ids.shape[1], device=ids.device)
    target_paddings = (positions[None, :] >= ids_len[:, None]).float()  # [B, L]
    return {
        "inputs": (audio.float(), audio_paddings),
        "targets": (ids.float(), target_paddings),
    }


def _np_float(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(x.numpy().astype(np.float32))


def _np_paddings(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] float32: 0 on the first ``lengths[b]`` positions of row b, 1 after."""
    out = np.ones((len(lengths), size), dtype=np.float32)
    for row, n in enumerate(lengths.tolist()):
        out[row, :n] = 0.0
    return torch.from_numpy(out)


class TrainBatchSampler(Sampler[list[int]]):
    """Endless per-rank batches of example indices, resumable.

    Epoch e's order is ``randperm(n)`` from a generator seeded by (seed, e), cut into global
    batches (the incomplete last one dropped); rank r takes slice r of each. State: the number
    of batches yielded (``seek``).
    """

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.n, self.batch_size, self.rank, self.seed = n, batch_size, rank, seed
        self.global_batch = batch_size * world_size
        if self.global_batch > n:
            raise ValueError(
                f"global batch {self.global_batch} exceeds the {n} LibriSpeech train utterances"
            )
        self.batches_per_epoch = n // self.global_batch
        self.epoch, self.position = 0, 0
        self._order_epoch, self._order = -1, torch.empty(0, dtype=torch.int64)

    def order(self, epoch: int) -> torch.Tensor:
        if epoch != self._order_epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order, self._order_epoch = torch.randperm(self.n, generator=gen), epoch
        return self._order

    def __iter__(self) -> Iterator[list[int]]:
        while True:  # a generator: it reads the position when first advanced, after any seek
            if self.position >= self.batches_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
            start = self.position * self.global_batch + self.rank * self.batch_size
            self.position += 1
            yield self.order(self.epoch)[start : start + self.batch_size].tolist()

    def seek(self, batches: int) -> None:
        if batches < 0:
            raise PipelineStateError(f"LibriSpeech train position {batches} is negative")
        self.epoch, self.position = divmod(batches, self.batches_per_epoch)


class EvalBatchSampler(Sampler[list[int]]):
    """Consecutive batches of ``indices`` (the last one may be smaller), once."""

    def __init__(self, indices: list[int], batch_size: int) -> None:
        self.indices, self.batch_size, self.position = indices, batch_size, 0

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        while self.position < len(self):
            start = self.position * self.batch_size
            self.position += 1
            yield self.indices[start : start + self.batch_size]

    def seek(self, batches: int) -> None:
        if not 0 <= batches <= len(self):
            raise PipelineStateError(
                f"LibriSpeech eval position {batches} is out of range ({len(self)} batches)"
            )
        self.position = batches


class SpeechBatches(Resumable):
    """One split's batches on the device, in the reference's layout; state = batches handed out.

    The loader (workers started on the first ``next()``) gathers int16 batches; each is copied
    to the device (pinned, non-blocking on CUDA) and expanded there by ``reference_batch``.
    """

    def __init__(
        self,
        dataset: SpeechDataset,
        sampler: TrainBatchSampler | EvalBatchSampler,
        request: DataRequest,
        identity: dict[str, Any],
    ) -> None:
        self.dataset, self.sampler, self.request = dataset, sampler, request
        self._fingerprint = identity
        self.batches = 0
        self._it: Iterator | None = None

    def _loader(self) -> DataLoader:
        workers = self.request.num_workers
        return DataLoader(
            self.dataset,
            batch_size=None,  # the sampler yields whole batches; the dataset collates them
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.request.device.type == "cuda",
            prefetch_factor=2 if workers > 0 else None,
            persistent_workers=False,
            # Workers' base seed from here, not the global RNG (which belongs to the model).
            generator=torch.Generator().manual_seed(self.request.seed * 7919 + self.request.rank),
        )

    def __next__(self) -> Batch:
        if self._it is None:
            self._it = iter(self._loader())
        audio, audio_len, ids, ids_len = next(self._it)
        self.batches += 1
        device = self.request.device
        nb = device.type == "cuda"
        return reference_batch(
            audio.to(device, non_blocking=nb),
            audio_len.to(device, non_blocking=nb),
            ids.to(device, non_blocking=nb),
            ids_len.to(device, non_blocking=nb),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "batches": self.batches}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        if self._it is not None:
            raise RuntimeError("load_state_dict() must come before the first next()")
        self.sampler.seek(int(state["batches"]))
        self.batches = int(state["batches"])


def split_names(config: WorkloadConfig, split: str) -> list[str]:
    """The prepared splits a workload split reads (train and eval_train share the train list)."""
    key = {"train": "train", "eval_train": "train", "validation": "validation", "test": "test"}
    return list(config.data[f"{key[split]}_splits"])


def open_dataset(config: WorkloadConfig, data_dir: str, split: str) -> SpeechDataset:
    root = librispeech_root(data_dir)
    splits = []
    for name in split_names(config, split):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            raise MissingLibriSpeechError(
                f"LibriSpeech split {name!r} not prepared: {folder!r} is missing. {_hint(data_dir)}"
            )
        splits.append(load_split(folder))
    data = config.data
    return SpeechDataset(splits, int(data["max_audio_samples"]), int(data["max_target_tokens"]))


def eval_train_indices(num_train: int, num_examples: int, seed: int) -> list[int]:
    """The reference's eval_train subset: ``random.Random(seed)`` shuffle, first N indices."""
    indices = list(range(num_train))
    random.Random(seed).shuffle(indices)
    return indices[:num_examples]


def input_iterator(config: WorkloadConfig, request: DataRequest) -> SpeechBatches:
    """This rank's batches of ``request.split`` on ``request.device`` (train: endless)."""
    dataset = open_dataset(config, request.data_dir, request.split)
    identity = fingerprint(
        "librispeech", request, workload=config.impl, num_examples=request.num_examples
    )
    if request.split == "train":
        sampler = TrainBatchSampler(
            len(dataset), request.batch_size, request.rank, request.world_size, request.seed
        )
        return SpeechBatches(dataset, sampler, request, identity)
    num = request.num_examples if request.num_examples is not None else len(dataset)
    if num > len(dataset):
        raise ValueError(
            f"LibriSpeech {request.split}: {num} examples requested, {len(dataset)} prepared "
            f"in {split_names(config, request.split)}"
        )
    if request.split == "eval_train":
        indices = eval_train_indices(len(dataset), num, request.seed)
    else:
        indices = list(range(num))
    shard = eval_shard(num, request.rank, request.world_size)
    sampler = EvalBatchSampler(indices[shard.start : shard.stop], request.batch_size)
    return SpeechBatches(dataset, sampler, request, identity)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """A batch of the real shapes, dtypes and value ranges: int16-valued audio of 5-20 s, and
    3..vocab-1 ids ending in EOS, short enough for CTC over the model's 500 output frames."""
    max_samples, max_tokens = (
        int(config.data["max_audio_samples"]),
        int(config.data["max_target_tokens"]),
    )
    vocab = int(config.model["vocab_size"])
    audio_len = torch.randint(max_samples // 4, max_samples + 1, (batch_size,), generator=gen)
    frames = audio_len // 640  # the models' output frames (hop 160, two stride-2 convs)
    ids_len = torch.minimum(
        (torch.rand(batch_size, generator=gen) * (frames // 3 - 2)).long() + 2,
        torch.tensor(max_tokens),
    )
    audio = (
        (torch.randn(batch_size, max_samples, generator=gen) * 3000).round().clamp(-32768, 32767)
    )
    ids = torch.randint(3, vocab, (batch_size, max_tokens), generator=gen, dtype=torch.int32)
    positions = torch.arange(max_tokens)
    ids[positions[None, :] == (ids_len[:, None] - 1)] = EOS_ID
    ids[positions[None, :] >= ids_len[:, None]] = 0
    audio[torch.arange(max_samples)[None, :] >= audio_len[:, None]] = 0
    return reference_batch(audio.to(torch.int16), audio_len, ids, ids_len)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
    return load_tokenizer(path)


def make_metric(config: WorkloadConfig, data_dir: str = "") -> SpeechMetrics:
    """The split metric; its tokenizer is the prepared one (ids as words on synthetic data)."""
    if not data_dir:
        return SpeechMetrics(IdWords())
    path = os.path.join(librispeech_root(data_dir), TOKENIZER_FILE)
    tokenizer = _tokenizer(path)
    vocab = int(config.model["vocab_size"])
    if tokenizer.get_piece_size() != vocab:
        raise ValueError(
            f"the tokenizer {path} has {tokenizer.get_piece_size()} pieces, the model outputs "
            f"{vocab} ids (workload.model.vocab_size); they must be equal"
        )
    return SpeechMetrics(tokenizer)
