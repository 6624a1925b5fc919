"""Helpers for the resumable-iterator contract (``spec.StatefulIterator``, DESIGN.md §9).

A pipeline's ``state_dict()`` holds only what ``torch.load(weights_only=True)`` reads back
(tensors, Python scalars, strings, ``None`` and lists/tuples/dicts of them), so checkpoints
never need to unpickle code. It carries a *fingerprint* of the request it was built for (kind,
seed, batch size, rank, world size...): loading it into an iterator built for another request is
an error that names both, never a silent jump to another stream.

    python -m pytest tests/test_pipeline_state.py
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from algoperf_torch.spec import Batch, DataRequest


class PipelineStateError(ValueError):
    """A saved pipeline state does not fit the iterator it is loaded into."""


def fingerprint(kind: str, request: DataRequest, **extra: Any) -> dict[str, Any]:
    """What identifies a stream: loading a state into another stream is refused."""
    return {
        "kind": kind,
        "split": request.split,
        "seed": int(request.seed),
        "batch_size": int(request.batch_size),
        "rank": int(request.rank),
        "world_size": int(request.world_size),
        **extra,
    }


def check_fingerprint(state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Raise ``PipelineStateError`` naming every field where ``state`` differs from ``expected``."""
    if not isinstance(state, Mapping) or "fingerprint" not in state:
        raise PipelineStateError(
            f"not a pipeline state (a mapping with a 'fingerprint' entry): {type(state).__name__}"
        )
    saved = dict(state["fingerprint"])
    diffs = [
        f"{k}: saved {saved.get(k)!r}, this pipeline {v!r}"
        for k, v in expected.items()
        if saved.get(k) != v
    ]
    diffs += [f"{k}: saved {saved[k]!r}, unknown to this pipeline" for k in saved.keys() - expected]
    if diffs:
        raise PipelineStateError(
            "the saved pipeline state belongs to another input stream (" + "; ".join(diffs) + "); "
            "resume with the run settings (seed, batch size, world size, workload) it was saved with"
        )


class Resumable:
    """Base for stateful iterators: ``iter(x) is x``; subclasses define ``__next__``,
    ``state_dict`` and ``load_state_dict``."""

    def __iter__(self) -> Resumable:
        return self

    def __next__(self) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError


def to_device(batch: Mapping[str, Any], device: torch.device) -> Batch:
    """Move every tensor of ``batch`` to ``device`` (pinned, non-blocking on CUDA); a value may
    also be a tuple of tensors (LibriSpeech's ``(audio, paddings)``) or a named tuple of them
    (OGBG's ``GraphsTuple``, rebuilt with its field names)."""
    pin = device.type == "cuda"

    def move(v: Any) -> Any:
        if isinstance(v, tuple) and hasattr(v, "_fields"):
            return type(v)(*(move(x) for x in v))
        if isinstance(v, tuple | list):
            return type(v)(move(x) for x in v)
        return (v.pin_memory() if pin else v).to(device, non_blocking=pin)

    return {k: move(v) for k, v in batch.items()}


def eval_shard(num_examples: int, rank: int, world_size: int) -> range:
    """This rank's contiguous share of ``num_examples``: shards cover each example once."""
    return range(rank * num_examples // world_size, (rank + 1) * num_examples // world_size)


class LoaderBatches(Resumable):
    """Base for iterators over a torchdata ``StatefulDataLoader`` driven by a batch sampler with
    ``seek(batch)`` (ImageNet's and fastMRI's).

    A subclass's ``__next__`` sets ``self._it = iter(self.loader)`` on the first call and, for
    each batch it hands out, ``self._loader_state = (loader.num_workers, loader.state_dict())``
    as taken right after that batch came out of the loader, and counts ``self.batches``.

    State: ``fingerprint`` (the request it belongs to), ``batches`` handed out, ``num_workers``
    of the loader whose state follows, ``loader`` (that state, or None before the first batch).
    Resuming moves the sampler to batch ``batches`` and, with the same worker count, loads
    ``loader`` (torchdata puts back the sampler state it recorded for that batch, the same one);
    torchdata's layout depends on the worker count, so with another count the sampler's position
    alone is used. Either way nothing before that batch is produced again.
    """

    def __init__(self, loader: Any, sampler: Any, identity: dict[str, Any]) -> None:
        self.loader, self.sampler = loader, sampler
        self._fingerprint = identity
        self.batches = 0
        self._loader_state: tuple[int, dict | None] = (loader.num_workers, None)
        self._it: Iterator | None = None

    def state_dict(self) -> dict[str, Any]:
        workers, loader_state = self._loader_state
        return {
            "fingerprint": dict(self._fingerprint),
            "batches": self.batches,
            "num_workers": workers,
            "loader": copy.deepcopy(loader_state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        if self._it is not None:
            raise RuntimeError("load_state_dict() must come before the first next()")
        batches, workers, loader_state = (
            int(state["batches"]),
            int(state["num_workers"]),
            state["loader"],
        )
        self.sampler.seek(batches)  # checks the position now (torchdata loads it lazily)
        if loader_state is not None and workers == self.loader.num_workers:
            self.loader.load_state_dict(copy.deepcopy(loader_state))
        self.batches = batches
        self._loader_state = (workers, copy.deepcopy(loader_state))
