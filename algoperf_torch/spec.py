"""The contract: workload constants and functions, the loss output, parameter types, the submission API.

Every workload, optimizer and runner in this package is written against this file. It mirrors the
reference's ``algoperf/spec.py`` (AlgoPerf v0.6) where published submissions depend on it, and
replaces its 20-member abstract ``Workload`` with a frozen dataclass of constants (read from the
workload YAML) plus a small bundle of functions (``WorkloadFunctions``), registered in
``algoperf_torch/workloads/__init__.py``.

    python -m algoperf_torch.workloads          # lists every registered workload
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

Batch = dict[str, Any]


class LossType(enum.Enum):
    """The reference's ``spec.LossType`` (same members, same order)."""

    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class ParameterType(enum.Enum):
    """The reference's ``spec.ParameterType``; values match so that saved type trees compare."""

    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


class TrainingCompleteError(Exception):
    """Raised by ``update_params`` to end a trial early (the runner still runs a final eval)."""


class ShapeTuple:
    """A parameter's shape, as the reference's ``spec.ShapeTuple`` (``.shape_tuple``)."""

    def __init__(self, shape_tuple: tuple[int, ...]) -> None:
        self.shape_tuple = tuple(shape_tuple)

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShapeTuple) and other.shape_tuple == self.shape_tuple

    def __hash__(self) -> int:
        return hash(self.shape_tuple)


SPLITS = ("train", "eval_train", "validation", "test")
EVAL_SPLITS = (("eval_train", "train"), ("validation", "validation"), ("test", "test"))
"""(data split, metric prefix) in the order the reference evaluates them (spec.py ``eval_model``)."""

COMPILE_CHOICES = ("off", "model", "model_and_loss")


@dataclass(frozen=True)
class WorkloadConfig:
    """Benchmark constants of one workload or variant; every value comes from its YAML file.

    Field names follow the reference's attribute names where published code reads them
    (``step_hint``, ``eval_batch_size``); the rest are short forms documented in the YAML.
    """

    name: str
    impl: str
    """Registry key of the code that implements it (a variant shares its base's code)."""
    target_metric: str
    target_minimize: bool
    validation_target: float
    test_target: float | None
    max_runtime: float
    eval_period: float
    step_hint: int
    num_train_examples: int
    num_eval_train_examples: int
    num_validation_examples: int
    num_test_examples: int | None
    eval_batch_size: int
    loss_type: str
    compile: str = "off"
    compile_cpu: str | None = None
    """The ``compile`` choice on CPU where it differs (None: ``compile`` everywhere): a conv
    net whose step is nearly all oneDNN convolutions gains nothing from inductor on CPU, while
    on a GPU the fused BN/activation kernels pay."""
    fast_kernels: bool = True
    """CPU fp32 layers take the faster kernels of ``layers/fast.py`` (same math, other rounding);
    off: exactly the reference's kernels."""
    model: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    base: str | None = None
    """For a variant, the base workload's name (``get_batch_size`` falls back to it)."""
    train_mean: Any = None
    train_stddev: Any = None
    v05_max_runtime: float | None = None
    """The v0.5 (paper competition) budget, where it differs; used with ``rules=v0.5``."""
    v05_step_hint: int | None = None
    v05_validation_target: float | None = None
    v05_test_target: float | None = None
    target_inclusive: bool = False
    """The target is met at equality too (≤ / ≥): finewebedu_lm's ``has_reached_*_target``."""
    eval_chunk_size: int | None = None
    """Evaluate each eval batch in row chunks of this size (the metric is a sum, so chunking
    changes nothing): keeps e.g. 256 x 1,024 x 50,257 LM logits from being materialised."""

    def compile_choice(self, device: torch.device | str) -> str:
        """The ``compile`` choice for a run on ``device``: ``compile_cpu`` on CPU if set."""
        if torch.device(device).type == "cpu" and self.compile_cpu is not None:
            return self.compile_cpu
        return self.compile

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(
                f"workload {self.name}: compile={self.compile!r}; expected one of {COMPILE_CHOICES}"
            )
        if self.compile_cpu is not None and self.compile_cpu not in COMPILE_CHOICES:
            raise ValueError(
                f"workload {self.name}: compile_cpu={self.compile_cpu!r}; expected null or one"
                f" of {COMPILE_CHOICES}"
            )
        if not isinstance(self.fast_kernels, bool):
            raise ValueError(
                f"workload {self.name}: fast_kernels={self.fast_kernels!r}; expected true or false"
            )
        try:
            LossType[self.loss_type.upper()]
        except KeyError:
            names = [t.name.lower() for t in LossType]
            raise ValueError(
                f"workload {self.name}: loss_type={self.loss_type!r}; expected one of {names}"
            ) from None
        for key in ("max_runtime", "eval_period", "step_hint", "eval_batch_size"):
            if getattr(self, key) <= 0:
                raise ValueError(f"workload {self.name}: {key}={getattr(self, key)} must be > 0")
        if self.eval_chunk_size is not None and self.eval_chunk_size <= 0:
            raise ValueError(
                f"workload {self.name}: eval_chunk_size={self.eval_chunk_size}; "
                "expected a positive integer or null"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> WorkloadConfig:
        """Build from a YAML mapping; an unknown key is an error that lists the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(
                f"workload {values.get('name')!r}: unknown key(s) {unknown}; valid keys: {names}"
            )
        return cls(**values)

    def for_rules(self, rules: str) -> WorkloadConfig:
        """This config under ``rules`` (``v0.5`` swaps in the v0.5 values where they differ)."""
        if rules != "v0.5":
            return self
        changes = {
            key: getattr(self, f"v05_{key}")
            for key in ("max_runtime", "step_hint", "validation_target", "test_target")
            if getattr(self, f"v05_{key}") is not None
        }
        return dataclasses.replace(self, **changes)

    @property
    def loss_type_enum(self) -> LossType:
        return LossType[self.loss_type.upper()]

    def num_examples(self, split: str) -> int | None:
        """Number of examples evaluated on ``split`` (``None``: the workload has no such split)."""
        return {
            "train": self.num_train_examples,
            "eval_train": self.num_eval_train_examples,
            "validation": self.num_validation_examples,
            "test": self.num_test_examples,
        }[split]

    def reached(self, value: float, target: float | None) -> bool:
        """Comparison against a target, as the reference's ``has_reached_*_target``: strict,
        or non-strict where ``target_inclusive``."""
        if target is None or value is None:
            return False
        if self.target_inclusive:
            return value <= target if self.target_minimize else value >= target
        return value < target if self.target_minimize else value > target


@dataclass
class LossOutput:
    """What a workload's loss returns (the reference's ``loss_fn`` dict, as attributes too).

    ``summed`` is the sum of per-example losses on this rank, ``n_valid_examples`` the number of
    unmasked examples on this rank, ``per_example`` the (masked) per-example losses.
    """

    summed: torch.Tensor
    n_valid_examples: torch.Tensor
    per_example: torch.Tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        # Published submissions index the result as a dict: loss_fn(...)["summed"].
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def keys(self) -> tuple[str, ...]:
        return ("summed", "n_valid_examples", "per_example")


class EvalMetric(Protocol):
    """Accumulates one eval split. ``state()`` holds tensors that are summed across ranks.

    A metric that needs more than the logits (e.g. to decode) sets ``needs_model = True``; the
    eval loop then calls ``update(logits, batch, model=model)``, with the model as the loop has
    it (maybe DDP/compile-wrapped). A metric that reads a prepared file (a tokenizer) gets the
    data folder at construction (``WorkloadFunctions.metric_reads_data``).
    """

    def update(self, logits: Any, batch: Batch) -> None: ...

    def state(self) -> dict[str, torch.Tensor]: ...

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]: ...


@runtime_checkable
class StatefulIterator(Protocol):
    """What every input pipeline returns: an iterator of batches that can be checkpointed.

    The contract (DESIGN.md §9; helpers in ``algoperf_torch/pipelines/state.py``):

    1. ``state_dict()`` describes the position *after the last batch ``next()`` returned*:
       batches a worker or a device prefetch produced ahead of time do not count.
    2. It holds only what ``torch.load(weights_only=True)`` reads back: tensors, Python
       scalars, strings, ``None`` and lists/tuples/dicts of them (generator states as
       ``torch.Generator.get_state()`` tensors, numpy bit-generator states as their dicts).
    3. An iterator built by the same workload function for the same ``DataRequest``, given
       ``load_state_dict(s)`` before its first ``next()``, yields bit for bit the batches the
       saved one would have yielded next: same examples, order, augmentations, mixup weights,
       across epoch boundaries and whatever ``num_workers`` is.
    4. Every random draw of a pipeline comes from generators held in that state or seeded from
       (data seed, epoch, example position); never from the global torch/numpy/Python RNGs or
       from loader-worker seeds, which a resumed process would not reproduce.
    5. A state saved for another request (seed, batch size, rank, world size, split) is refused
       with ``PipelineStateError`` naming the differing fields.
    """

    def __iter__(self) -> StatefulIterator: ...

    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class DataRequest:
    """Everything a workload's data function needs to build one split's iterator.

    Args:
        split: one of ``SPLITS``.
        data_dir: root of the prepared dataset.
        batch_size: examples per batch **on this rank** (global batch / world size).
        seed: the data seed (the same on every rank).
        rank, world_size: this process's place; each rank must read a disjoint shard.
        num_examples: for eval splits, how many examples to cover exactly once across ranks.
        num_workers: loader worker processes.
        device: where batches are delivered.
        eval_index: differs between the evaluations of one trial (the runner passes the global
            step); a pipeline whose eval_train subset is re-drawn at every evaluation, as
            Criteo's, keys the draw on it. Others ignore it.
    """

    split: str
    data_dir: str
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    num_examples: int | None = None
    num_workers: int = 0
    device: torch.device = torch.device("cpu")
    eval_index: int = 0


@dataclass(frozen=True)
class WorkloadFunctions:
    """The code side of a workload: one registry entry (see ``workloads/__init__.py``).

    Args:
        build_model: config -> ``nn.Module`` with the reference's parameter names and init.
            Called after the torch RNG was seeded, on the meta device for parameter counts.
        input_iterator: (config, DataRequest) -> a ``StatefulIterator`` of batches on
            ``request.device``. Train: endless and shuffled; eval splits: each example of this
            rank's shard once.
        synthetic_batch: (config, batch_size, torch.Generator) -> a batch of the real shapes
            and dtypes, on CPU.
        loss: (config, label_batch, logits_batch, mask_batch, label_smoothing) -> LossOutput.
        make_metric: config -> a fresh ``EvalMetric`` for one split.
        forward: (model, batch, train, dropout_rate) -> logits; default ``model(batch["inputs"])``.
        param_type: (name) -> ParameterType; default the reference's name rules.
        is_output_param: (name) -> bool.
        uses_batch_norm: ``model_fn``'s ``update_batch_norm`` applies (BN layers with the switch).
    """

    build_model: Callable[[WorkloadConfig], nn.Module]
    input_iterator: Callable[[WorkloadConfig, DataRequest], StatefulIterator]
    synthetic_batch: Callable[[WorkloadConfig, int, torch.Generator], Batch]
    loss: Callable[..., LossOutput]
    make_metric: Callable[[WorkloadConfig], EvalMetric]
    forward: Callable[[nn.Module, Batch, bool, float | None], Any] | None = None
    is_output_param: Callable[[str], bool] = lambda name: False
    uses_batch_norm: bool = False
    reinit_in_place: bool = False
    """A second ``init_model_fn`` re-initialises the first model in place, without re-seeding
    (the reference's MNIST and CIFAR); the model must define ``reset_parameters()``."""
    param_type: Callable[[str], ParameterType] | None = None
    """(name) -> ParameterType where the reference's name rules do not decide (None: them)."""
    eval_weights: bool = False
    """Eval batches carry a float ``weights`` mask shaped like ``targets`` (synthetic: ones)."""
    meta_data: Callable[[WorkloadConfig, torch.device], dict[str, Any]] | None = None
    """(config, device) -> facts for the trial's meta data (e.g. the compute dtype used)."""
    sync_before_eval: bool = False
    """Under DDP, average the model's floating-point state (BN running statistics) across ranks
    before each eval, as the reference's Conformer ``sync_sd`` (its BN does not sync in training)."""
    metric_reads_data: bool = False
    """``make_metric`` is called as ``make_metric(config, data_dir)`` (``data_dir`` is ``""`` on
    synthetic data): the metric needs a file prepared with the data, e.g. a tokenizer."""


class Submission(Protocol):
    """The reference submission API (RULES.md §1.1), implemented by modules or adapters.

    ``update_params`` and ``prepare_for_eval`` are called with keyword arguments; the other three
    positionally, exactly as the reference's ``submission_runner.py``.
    """

    def get_batch_size(self, workload_name: str) -> int: ...

    def init_optimizer_state(self, workload, model_params, model_state, hyperparameters, rng): ...

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
    ): ...

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
    ): ...
