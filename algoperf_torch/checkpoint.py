"""Save and restore a trial's state so that it survives preemption (RULES.md §2.10).

A checkpoint ``<trial_dir>/checkpoint_<global_step>`` (one ``torch.save`` file) holds the model's
``state_dict`` (unwrapped from DDP and ``torch.compile``), every optimizer-state entry (its
``state_dict()``, or the object itself where it has none but pickles), ``model_state``, the
``TrainState`` fields, ``eval_results``, ``global_step``, ``preemption_count`` and the torch,
numpy and Python RNG states. It is written to a temporary file in the same folder, fsynced and
renamed, so a run killed mid-write leaves the previous checkpoints intact. The data pipeline's
position is not saved: a resumed trial's pipeline restarts from its seed, as the reference's.

    python -m algoperf_torch checkpoint=true max_steps=50
    python -m algoperf_torch checkpoint=true max_steps=100 resume=true
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from algoperf_torch.logs import atomic_write_bytes
from algoperf_torch.timing import TrainState
from algoperf_torch.workload import unwrap

_NAME = re.compile(r"^checkpoint_(\d+)$")


@dataclass
class Checkpoint:
    """A loaded checkpoint (tensors on the CPU)."""

    model: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    model_state: Any
    train_state: dict[str, Any]
    eval_results: list[tuple[int, dict[str, Any]]]
    global_step: int
    preemption_count: int
    rng_states: dict[str, Any] = field(default_factory=dict)
    path: str = ""


def checkpoint_path(trial_dir: str, global_step: int) -> str:
    return os.path.join(trial_dir, f"checkpoint_{global_step}")


def list_checkpoints(trial_dir: str) -> list[tuple[int, str]]:
    """``(global_step, path)`` of every checkpoint in ``trial_dir``, oldest first."""
    if not os.path.isdir(trial_dir):
        return []
    found = [(int(m.group(1)), n) for n in os.listdir(trial_dir) if (m := _NAME.match(n))]
    return [(step, os.path.join(trial_dir, name)) for step, name in sorted(found)]


def latest_checkpoint(trial_dir: str) -> str | None:
    """The path of the checkpoint with the highest global step, or None if there is none."""
    found = list_checkpoints(trial_dir)
    return found[-1][1] if found else None


def _optimizer_entries(optimizer_state: Any) -> dict[str, Any]:
    """Each entry's ``state_dict()``, or the entry itself where it has none but pickles.

    The reference skips such entries with a warning, so its restore then fails; we refuse early.
    """
    entries = (
        dict(optimizer_state) if isinstance(optimizer_state, Mapping) else {"": optimizer_state}
    )
    out: dict[str, Any] = {}
    for key, value in entries.items():
        if hasattr(value, "state_dict"):
            out[key] = {"state_dict": value.state_dict()}
            continue
        try:
            pickle.dumps(value)
        except Exception as e:
            raise TypeError(
                f"optimizer_state[{key!r}] of type {type(value).__name__} has no state_dict() and "
                f"cannot be pickled ({e}); a checkpointed optimizer state needs entries with "
                "state_dict()/load_state_dict() or picklable values"
            ) from e
        out[key] = {"value": value}
    return out


def _rng_states() -> dict[str, Any]:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def save_checkpoint(
    trial_dir: str,
    model: nn.Module,
    optimizer_state: Any,
    model_state: Any,
    train_state: TrainState,
    eval_results: list[tuple[int, dict[str, Any]]],
    preemption_count: int,
    keep: int | None = None,
) -> str:
    """Write ``checkpoint_<global_step>`` atomically; keep only the newest ``keep`` (None: all).

    Call on rank 0 only. Returns the checkpoint's path.
    """
    if keep is not None and keep < 1:
        raise ValueError(f"keep={keep}; expected a positive integer or None (keep all)")
    step = train_state.global_step
    payload = {
        "model": unwrap(model).state_dict(),
        "optimizer_state": _optimizer_entries(optimizer_state),
        "model_state": model_state,
        "train_state": asdict(train_state),
        "eval_results": eval_results,
        "global_step": step,
        "preemption_count": preemption_count,
        "rng_states": _rng_states(),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = checkpoint_path(trial_dir, step)
    atomic_write_bytes(path, buf.getvalue())
    if keep is not None:
        for _, old in list_checkpoints(trial_dir)[:-keep]:
            os.unlink(old)
    return path


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint`` (onto the CPU).

    ``weights_only=False``: the file holds our own bookkeeping (RNG states, pickled optimizer
    entries), so only load checkpoints you wrote.
    """
    raw = torch.load(path, map_location="cpu", weights_only=False)
    return Checkpoint(**raw, path=path)


def restore(
    ckpt: Checkpoint, model: nn.Module, optimizer_state: Any, restore_rng: bool = True
) -> tuple[Any, TrainState]:
    """Load ``ckpt`` into a freshly built model and optimizer state.

    The weights go into the unwrapped module, so DDP and ``torch.compile`` wrappers stay (the
    reference's restore returns the bare module and so drops DDP's gradient sync). Entries with
    ``load_state_dict`` are loaded in place; pickled entries replace the fresh ones.

    Returns:
        The optimizer state (a dict is updated in place) and the train state.
    """
    unwrap(model).load_state_dict(ckpt.model)
    is_mapping = isinstance(optimizer_state, Mapping)
    entries = dict(optimizer_state) if is_mapping else {"": optimizer_state}
    if set(entries) != set(ckpt.optimizer_state):
        raise ValueError(
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
    if restore_rng:
        _set_rng_states(ckpt.rng_states)
    return optimizer_state, TrainState(**ckpt.train_state)


def _set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
