"""Submissions: load an AlgoPerf-style submission file, or wrap one of our optimizers.

Both give the runner the reference submission API (RULES.md §1.1). ``OptimizerSubmission`` is
the one generic adapter over the optimizer table: it holds the single training step every
baseline shares (forward, DDP-correct mean of the summed loss, backward, optional clipping,
optimizer and schedule step), so no optimizer copies an update loop.

    python -m algoperf_torch optimizer=nadamw
    python -m algoperf_torch optimizer=file optimizer.path=my_submission.py optimizer.hparams=p.json
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import types
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn

from algoperf_torch.optimizers import COMMON_HPARAMS, OptimInfo, get_optimizer_info
from algoperf_torch.spec import ForwardPassMode

REQUIRED_FUNCTIONS = ("get_batch_size", "init_optimizer_state", "update_params", "data_selection")
SEARCH_SPACE_DIR = os.path.join(os.path.dirname(__file__), "optimizers", "search_spaces")


class SubmissionError(ValueError):
    """A submission file or its hyperparameters cannot be used; the message says why."""


def make_hyperparameters(point: Mapping[str, Any]) -> tuple:
    """The reference's ``Hyperparameters`` namedtuple, one field per key (attribute access)."""
    cls = collections.namedtuple("Hyperparameters", sorted(point))
    return cls(**point)


def resolve_search_space_path(name: str) -> str:
    """A search-space file: an existing path, or a file name under optimizers/search_spaces/."""
    path = os.path.expanduser(name)
    if os.path.exists(path):
        return path
    bundled = os.path.join(SEARCH_SPACE_DIR, name)
    if os.path.exists(bundled):
        return bundled
    raise SubmissionError(f"search space {name!r}: no such file (nor in {SEARCH_SPACE_DIR})")


def load_hparams(value: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A hyperparameter point from a mapping, a JSON point, or a search-space file.

    A search-space file (list form, or dict form with ``feasible_points``/``min``/``max``)
    contributes its first point, drawn as the reference's quasi-random search draws it.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    path = os.path.expanduser(str(value))
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except FileNotFoundError:
        raise SubmissionError(f"hyperparameter file {path!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise SubmissionError(f"hyperparameter file {path!r} is not valid JSON: {e}") from None
    if isinstance(content, list) or any(isinstance(v, dict) for v in content.values()):
        from algoperf_torch.tuning.search_space import generate_search

        points = generate_search(content, 1)
        return dict(points[0])
    return content


def load_submission_module(path: str) -> types.ModuleType:
    """Import a submission file as the reference does, with our stand-in ``algoperf`` package.

    What it imports from its own folder tree resolves by the rules of
    ``submission_imports`` (organisers'-layout paths, top-level helper modules, bundled
    packages importing their siblings); ``sys.path`` is left as it was.
    """
    return load_submission(path).module


def load_submission(path: str) -> FileSubmission:
    """A submission file behind the reference API, its imports resolved in its folder tree."""
    from algoperf_torch.submission_imports import SubmissionImportError, SubmissionImports

    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise SubmissionError(f"submission file {path!r} does not exist")
    from algoperf_torch import compat

    compat.install()
    imports = SubmissionImports(os.path.dirname(path))
    try:
        module = imports.load(path)
    except ModuleNotFoundError as e:
        raise SubmissionError(imports.explain_missing(e)) from e
    except SubmissionImportError as e:
        raise SubmissionError(str(e)) from e
    except (RuntimeError, AssertionError, ValueError, TypeError) as e:
        message = hardware_message(e, "its import", path)
        if message is None:
            raise
        raise SubmissionHardwareError(message) from e
    missing = [f for f in REQUIRED_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise SubmissionError(
            f"submission {path} does not define {', '.join(missing)}; a submission must define "
            f"{', '.join(REQUIRED_FUNCTIONS)} (and may define prepare_for_eval)"
        )
    return FileSubmission(module, imports, path)


class SubmissionHardwareError(SubmissionError):
    """A submission assumes hardware or a launch this run does not have (CUDA, torchrun)."""


API_FUNCTIONS = (*REQUIRED_FUNCTIONS, "prepare_for_eval")


class FileSubmission:
    """A loaded submission file: its API functions, called with its import rules active.

    Calls run inside ``SubmissionImports.active()``, so an import inside a function (a helper
    imported lazily) resolves as at load time. A failure that comes from the submission's own
    hardware assumptions (it calls CUDA on a CPU-only run, or needs a torchrun process group of
    a given size) is raised as one ``SubmissionHardwareError`` saying so, the original error
    chained; other errors pass unchanged.
    """

    def __init__(self, module: types.ModuleType, imports, path: str) -> None:
        self.module = module
        self.imports = imports
        self.path = path
        for name in API_FUNCTIONS:
            fn = getattr(module, name, None)
            if callable(fn):
                setattr(self, name, self._wrap(name, fn))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names __init__ did not set: the module's other attributes.
        if name == "module":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def _wrap(self, name: str, fn):
        imports, path = self.imports, self.path

        @functools.wraps(fn)
        def call(*args, **kwargs):
            with imports.active():
                try:
                    return fn(*args, **kwargs)
                except ModuleNotFoundError as e:
                    raise SubmissionError(imports.explain_missing(e)) from e
                except (RuntimeError, AssertionError, ValueError, TypeError) as e:
                    message = hardware_message(e, name, path)
                    if message is None:
                        raise
                    raise SubmissionHardwareError(message) from e

        return call


# What torch says when code asks for CUDA on a machine without it (only read when
# torch.cuda.is_available() is False), and when code needs a process group it does not have.
_CUDA_MARKERS = re.compile(r"NVIDIA driver|not compiled with CUDA|\bCUDA\b|\bnccl\b", re.I)
_PROCESS_GROUP_MARKERS = re.compile(
    r"process group has not been initialized|distributed to be initialized|"
    r"num_trainers_per_group|trainers per group",
    re.I,
)


def hardware_message(exc: BaseException, function: str, path: str) -> str | None:
    """A one-paragraph explanation if ``exc`` is a hardware/launch assumption, else None."""
    text = f"{type(exc).__name__}: {exc}"
    from algoperf_torch.submission_imports import innermost_frame

    where = innermost_frame(exc, os.path.dirname(path))
    where = f"(at {where}) " if where else ""
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if _CUDA_MARKERS.search(text) and not torch.cuda.is_available():
        return (
            f"submission {path}: {function} {where}calls CUDA, and this machine has no CUDA "
            f"device ({first_line}). The submission assumes a GPU; run it on a machine with one "
            "(device=cuda), unmodified."
        )
    if _PROCESS_GROUP_MARKERS.search(text):
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        return (
            f"submission {path}: {function} {where}assumes a torch.distributed launch this run "
            f"does not have (this run has {world} process(es); {first_line}). "
            f"{_launch_hint(path)}"
        )
    return None


def _launch_hint(path: str) -> str:
    """How to launch: with the group size the submission asks for, if it names one."""
    try:
        with open(path, encoding="utf-8") as f:
            sizes = sorted(
                {int(n) for n in re.findall(r"num_trainers_per_group\s*=\s*(\d+)", f.read())}
            )
    except OSError:
        sizes = []
    if sizes:
        n = max(sizes)
        return (
            f"It asks for {n} trainers per group (num_trainers_per_group={n}): launch it with "
            f"torchrun --nproc_per_node={n} -m algoperf_torch ... (a multiple of {n} processes)."
        )
    return "Launch it as it was run: torchrun --nproc_per_node=<GPUs> -m algoperf_torch ..."


class OptimizerSubmission:
    """One of our optimizers behind the reference submission API.

    Args:
        name: the optimizer table key.
        hparams: the hyperparameter point.
        batch_sizes: global batch size per workload name.
        default_hparams: values for every key ``hparams`` lacks (the optimizer YAML's point).
    """

    def __init__(
        self,
        name: str,
        hparams: Mapping[str, Any] | None,
        batch_sizes: Mapping[str, int],
        default_hparams: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.info: OptimInfo = get_optimizer_info(name)
        point = {**(default_hparams or {}), **(hparams or {})}
        unknown = sorted(set(point) - set(self.info.hparams) - set(COMMON_HPARAMS))
        if unknown:
            raise SubmissionError(
                f"optimizer {name}: unknown hyperparameter(s) {unknown}; accepted: "
                f"{sorted(set(self.info.hparams) | set(COMMON_HPARAMS))}"
            )
        self.hparams = point
        self.batch_sizes = dict(batch_sizes)

    def get_batch_size(self, workload_name: str) -> int:
        if workload_name not in self.batch_sizes:
            raise ValueError(
                f"optimizer {self.name} has no batch size for workload {workload_name!r} "
                f"(known: {sorted(self.batch_sizes)}); add it to optimizer.batch_sizes or pass "
                "batch_size=N"
            )
        return int(self.batch_sizes[workload_name])

    def init_optimizer_state(self, workload, model_params, model_state, hyperparameters, rng):
        h = self.hparams
        groups = (
            self.info.param_groups(model_params, h)
            if self.info.param_groups is not None
            else model_params.parameters()
        )
        optimizer = self.info.build(groups, h)
        schedule = self.info.schedule(h, workload.step_hint)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "scheduler": scheduler}

    def _loss(self, workload, model, batch, update_batch_norm: bool = True) -> torch.Tensor:
        logits, _ = workload.model_fn(
            params=model,
            augmented_and_preprocessed_input_batch=batch,
            model_state=None,
            mode=ForwardPassMode.TRAIN,
            rng=None,
            update_batch_norm=update_batch_norm,
            dropout_rate=self.hparams.get("dropout_rate"),
        )
        out = workload.loss_fn(
            label_batch=batch["targets"],
            logits_batch=logits,
            mask_batch=batch.get("weights"),
            label_smoothing=float(self.hparams.get("label_smoothing", 0.0)),
        )
        summed, n_valid = out["summed"], out["n_valid_examples"]
        if dist.is_available() and dist.is_initialized():
            # Differentiable all-reduce: the loss is the global mean, as the reference computes.
            summed = dist_nn.all_reduce(summed)
            n_valid = dist_nn.all_reduce(
                torch.as_tensor(n_valid, dtype=summed.dtype, device=summed.device)
            )
        return summed / n_valid

    def update_params(
        self,
        workload,
        current_param_container,
        current_params_types,
        model_state,
        hyperparameters,
        batch,
        loss_type,
        optimizer_state,
        eval_results,
        global_step,
        rng,
        train_state=None,
    ):
        model = current_param_container
        optimizer = optimizer_state["optimizer"]
        model.train()
        if self.info.train_eval_modes:
            optimizer.train()

        def closure(update_batch_norm: bool = False) -> torch.Tensor:
            # Passes after the first (SAM's) leave BN statistics alone, as the reference's SAM.
            optimizer.zero_grad(set_to_none=True)
            loss = self._loss(workload, model, batch, update_batch_norm)
            loss.backward()
            return loss

        loss = closure(update_batch_norm=True)
        grad_clip = self.hparams.get("grad_clip")
        grad_norm = None
        if grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=grad_clip)
        if self.info.uses_closure:
            optimizer.step(closure)
        else:
            optimizer.step()
        optimizer_state["scheduler"].step()
        self._log(workload, global_step, loss, grad_norm, model)
        return optimizer_state, model, model_state

    def _log(self, workload, global_step, loss, grad_norm, model) -> None:
        # The baselines log loss and grad norm for the first 100 steps and every 500 steps.
        if workload.metrics_logger is None or not (global_step <= 100 or global_step % 500 == 0):
            return
        if grad_norm is None:
            norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
            grad_norm = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())
        workload.metrics_logger.append_scalar_metrics(
            {"loss": float(loss.item()), "grad_norm": float(grad_norm.item())}, global_step
        )

    def prepare_for_eval(
        self,
        workload,
        current_param_container,
        current_params_types,
        model_state,
        hyperparameters,
        loss_type,
        optimizer_state,
        eval_results,
        global_step,
        rng,
    ):
        if self.info.train_eval_modes:
            optimizer_state["optimizer"].eval()
        return optimizer_state, current_param_container, model_state

    def data_selection(
        self,
        workload,
        input_queue,
        optimizer_state,
        current_param_container,
        model_state,
        hyperparameters,
        global_step,
        rng,
    ):
        return next(input_queue)
