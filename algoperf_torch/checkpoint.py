"""Save and restore a trial's state so that a resumed trial trains as if never stopped.

A checkpoint at global step N is two files in the trial directory:

- ``checkpoint_N``: one ``torch.save`` file with the model's ``state_dict`` (unwrapped from DDP
  and ``torch.compile``), every optimizer-state entry (its ``state_dict()``, or the value
  itself), ``model_state`` and, for every rank, its process-wide RNG states (``global_rng``)
  and its input pipeline's ``state_dict()`` (``spec.StatefulIterator``). Everything in it is
  plain data, and it is read with ``torch.load(weights_only=True)``: opening a checkpoint
  someone else wrote cannot run code (a file that would is refused).
- ``checkpoint_N.json``, written after it: the bookkeeping (train state, eval results, the
  number of rows each CSV had, the preemption count) and the SHA-256 and size of
  ``checkpoint_N``.

Both are written to temporary files, fsynced and renamed, so a kill at any moment leaves every
earlier checkpoint intact. A checkpoint counts only when its JSON exists and the data file's
hash matches: one truncated by a full disk, rotten or half written is reported and the newest
older one is used instead (``load_latest``); with none left, resuming stops with an error.
RULES.md §2.10 (the reference's ``--save_checkpoints``/``--resume_last_run``), extended to
exact resume (DESIGN.md §9).

    python -m algoperf_torch checkpoint=true max_steps=50
    python -m algoperf_torch checkpoint=true max_steps=100 resume=true
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from algoperf_torch.logs import atomic_write_bytes, atomic_write_json
from algoperf_torch.timing import TrainState
from algoperf_torch.workload import unwrap

log = logging.getLogger("algoperf_torch")

FORMAT = 2
"""Version of the two-file layout (1: a single pickle, read with weights_only=False)."""

_NAME = re.compile(r"^checkpoint_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint cannot be used (missing, incomplete, corrupt, unsafe or mismatched)."""


@dataclass
class Checkpoint:
    """A loaded checkpoint (tensors on the CPU).

    ``rank_states[r]`` is rank r's ``{"rng": global_rng.capture(), "data": pipeline state}``;
    ``log_rows`` the number of rows ``measurements.csv`` and ``eval_measurements.csv`` had.
    """

    model: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    model_state: Any
    train_state: dict[str, Any]
    eval_results: list[tuple[int, dict[str, Any]]]
    global_step: int
    preemption_count: int
    rank_states: list[dict[str, Any]] = field(default_factory=list)
    log_rows: dict[str, int] = field(default_factory=dict)
    path: str = ""


def checkpoint_path(trial_dir: str, global_step: int) -> str:
    return os.path.join(trial_dir, f"checkpoint_{global_step}")


def list_checkpoints(trial_dir: str, complete: bool = False) -> list[tuple[int, str]]:
    """``(global_step, path)`` of the checkpoint data files in ``trial_dir``, oldest first.

    ``complete``: only those whose JSON was written (their hashes are checked on loading).
    """
    if not os.path.isdir(trial_dir):
        return []
    names = set(os.listdir(trial_dir))
    found = [
        (int(m.group(1)), n)
        for n in names
        if (m := _NAME.match(n)) and (not complete or n + ".json" in names)
    ]
    return [(step, os.path.join(trial_dir, name)) for step, name in sorted(found)]


def _optimizer_entries(optimizer_state: Any) -> dict[str, Any]:
    """Each entry's ``state_dict()``, or the entry itself where it has none."""
    entries = (
        dict(optimizer_state) if isinstance(optimizer_state, Mapping) else {"": optimizer_state}
    )
    return {
        key: {"state_dict": value.state_dict()}
        if hasattr(value, "state_dict")
        else {"value": value}
        for key, value in entries.items()
    }


def _serialise(payload: dict[str, Any]) -> bytes:
    """``torch.save`` bytes of ``payload``; refuses what ``weights_only=True`` could not read.

    Raises:
        TypeError: naming the entry that holds an object outside tensors and plain data.
    """
    buf = io.BytesIO()
    try:
        torch.save(payload, buf)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"the checkpoint cannot be serialised: {e}") from e
    unsafe = _unsafe_globals(buf.getvalue())
    if unsafe:
        where = _first_unsafe_entry(payload)
        raise TypeError(
            f"{where} holds objects of {unsafe}, which a checkpoint cannot carry: it holds only "
            "tensors and plain data (numbers, strings, None, lists, tuples, dicts), so that "
            "loading it runs no code. Give such optimizer-state entries state_dict()/"
            "load_state_dict() methods that return plain data."
        )
    return buf.getvalue()


def _unsafe_globals(data: bytes) -> list[str]:
    return torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))


def _first_unsafe_entry(payload: dict[str, Any]) -> str:
    """The name of the first payload entry that holds a refused object (for the message)."""
    candidates: list[tuple[str, Any]] = [
        (f"optimizer_state[{k!r}]", v) for k, v in payload["optimizer_state"].items()
    ]
    candidates += [("model_state", payload["model_state"])]
    candidates += [
        (f"rank {r}'s pipeline state", s["data"]) for r, s in enumerate(payload["ranks"])
    ]
    for name, value in candidates:
        buf = io.BytesIO()
        torch.save(value, buf)
        if _unsafe_globals(buf.getvalue()):
            return name
    return "the checkpoint"


def save_checkpoint(
    trial_dir: str,
    model: nn.Module,
    optimizer_state: Any,
    model_state: Any,
    train_state: TrainState,
    eval_results: list[tuple[int, dict[str, Any]]],
    preemption_count: int,
    rank_states: list[dict[str, Any]],
    log_rows: Mapping[str, int] | None = None,
    keep: int | None = None,
) -> str:
    """Write ``checkpoint_<global_step>`` and its JSON atomically; keep the newest ``keep``.

    Call on rank 0 only, with every rank's ``{"rng", "data"}`` states gathered in
    ``rank_states``. Returns the data file's path.
    """
    if keep is not None and keep < 1:
        raise ValueError(f"keep={keep}; expected a positive integer or None (keep all)")
    step = train_state.global_step
    data = _serialise(
        {
            "format": FORMAT,
            "model": unwrap(model).state_dict(),
            "optimizer_state": _optimizer_entries(optimizer_state),
            "model_state": model_state,
            "ranks": rank_states,
        }
    )
    path = checkpoint_path(trial_dir, step)
    atomic_write_bytes(path, data)
    atomic_write_json(
        path + ".json",
        {
            "format": FORMAT,
            "global_step": step,
            "preemption_count": preemption_count,
            "world_size": len(rank_states),
            "train_state": asdict(train_state),
            "eval_results": [[s, row] for s, row in eval_results],
            "log_rows": dict(log_rows or {}),
            "data_file": os.path.basename(path),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    if keep is not None:
        for _, old in list_checkpoints(trial_dir)[:-keep]:
            for name in (old, old + ".json"):
                if os.path.exists(name):
                    os.unlink(name)
    return path


def load_checkpoint(path: str) -> Checkpoint:
    """Read and verify the checkpoint whose data file is ``path`` (tensors onto the CPU).

    Raises:
        CheckpointError: the JSON is missing or unreadable (an interrupted write), the data
            file's size or SHA-256 differs from the JSON's (truncated, corrupt), or it holds
            objects that ``weights_only=True`` refuses (it could run code).
    """
    meta_path = path + ".json"
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is incomplete: {os.path.basename(meta_path)} is missing (the run was "
            "stopped while writing it, or it was written by an older version)"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{meta_path} is unreadable: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{meta_path} has format {meta.get('format')!r}; this version reads format {FORMAT}"
        )
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"{path} is unreadable: {e}") from e
    if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(
            f"{path} is corrupt: {len(data)} bytes with SHA-256 "
            f"{hashlib.sha256(data).hexdigest()[:16]}..., its JSON records {meta['bytes']} bytes "
            f"with {meta['sha256'][:16]}... (truncated by a full disk, or damaged)"
        )
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} was refused: it holds pickled objects that could run code when loaded "
            f"(read with weights_only=True): {str(e).splitlines()[0]}"
        ) from e
    except Exception as e:
        raise CheckpointError(f"{path} is unreadable: {e}") from e
    return Checkpoint(
        model=raw["model"],
        optimizer_state=raw["optimizer_state"],
        model_state=raw["model_state"],
        train_state=meta["train_state"],
        eval_results=[(int(s), row) for s, row in meta["eval_results"]],
        global_step=int(meta["global_step"]),
        preemption_count=int(meta["preemption_count"]),
        rank_states=list(raw["ranks"]),
        log_rows={k: int(v) for k, v in meta["log_rows"].items()},
        path=path,
    )


def load_latest(trial_dir: str) -> Checkpoint:
    """The newest checkpoint of ``trial_dir`` that verifies; unusable newer ones are reported.

    Raises:
        CheckpointError: there is no checkpoint, or none of them verifies (each one's reason is
            listed).
    """
    found = list_checkpoints(trial_dir)
    if not found:
        raise CheckpointError(
            f"{trial_dir} holds no checkpoint_<step> file: nothing to resume (a trial saves "
            "checkpoints only with checkpoint=true)"
        )
    problems = []
    for _, path in reversed(found):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            log.warning("%s; trying the previous checkpoint", e)
            problems.append(str(e))
            continue
        if problems:
            log.warning(
                "resuming from %s: %d newer checkpoint(s) were unusable", path, len(problems)
            )
        return ckpt
    raise CheckpointError(
        f"no usable checkpoint in {trial_dir}; refusing to train from a damaged state:\n  "
        + "\n  ".join(problems)
    )


def restore(ckpt: Checkpoint, model: nn.Module, optimizer_state: Any) -> tuple[Any, TrainState]:
    """Load ``ckpt``'s weights and optimizer state into a freshly built model and optimizer.

    The weights go into the unwrapped module, so DDP and ``torch.compile`` wrappers stay (the
    reference's restore returns the bare module and so drops DDP's gradient sync). Entries with
    ``load_state_dict`` are loaded in place; value entries replace the fresh ones. RNG and
    pipeline states are the runner's to restore (``rank_states``).

    Returns:
        The optimizer state (a dict is updated in place) and the train state.
    """
    unwrap(model).load_state_dict(ckpt.model)
    is_mapping = isinstance(optimizer_state, Mapping)
    entries = dict(optimizer_state) if is_mapping else {"": optimizer_state}
    if set(entries) != set(ckpt.optimizer_state):
        raise CheckpointError(
            f"{ckpt.path} holds optimizer-state entries {sorted(ckpt.optimizer_state)}; the "
            f"submission built {sorted(entries)}: was the checkpoint written by another optimizer?"
        )
    for key, saved in ckpt.optimizer_state.items():
        if "state_dict" in saved:
            entries[key].load_state_dict(saved["state_dict"])
        else:
            entries[key] = saved["value"]
    if isinstance(optimizer_state, dict):
        optimizer_state.update(entries)
    else:
        optimizer_state = entries if is_mapping else entries[""]
    return optimizer_state, TrainState(**ckpt.train_state)
