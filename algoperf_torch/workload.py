"""The workload object a submission sees: the reference's ``Workload`` API over our spec.

One class serves every workload: it binds a ``WorkloadConfig`` (constants from YAML) and a
``WorkloadFunctions`` entry (code from the registry) to a device and a ``DistInfo``, and exposes
the names published AlgoPerf PyTorch submissions use (RULES.md §1.3): ``model_fn``, ``loss_fn``,
``step_hint``, ``param_shapes``, ``model_params_types``, ``metrics_logger``, targets, sizes...

    python -m algoperf_torch workload=mnist optimizer=nadamw
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from algoperf_torch.distributed import DistInfo
from algoperf_torch.layers.batch_norm import set_running_stats_update
from algoperf_torch.layers.fast import set_fast_kernels
from algoperf_torch.pipelines.synthetic import synthetic_iterator
from algoperf_torch.spec import (
    Batch,
    DataRequest,
    ForwardPassMode,
    LossOutput,
    LossType,
    ParameterType,
    ShapeTuple,
    StatefulIterator,
    WorkloadConfig,
    WorkloadFunctions,
)


def param_type_from_name(name: str) -> ParameterType:
    """The reference's name rules [algoperf/param_utils.py ``pytorch_param_types``]."""
    if "bn" in name:
        if "weight" in name or "scale" in name:
            return ParameterType.BATCH_NORM_SCALE
        return ParameterType.BATCH_NORM_BIAS
    if "norm" in name or "ln" in name:
        if "weight" in name or "scale" in name:
            return ParameterType.LAYER_NORM_SCALE
        return ParameterType.LAYER_NORM_BIAS
    if "conv" in name:
        return ParameterType.BIAS if "bias" in name else ParameterType.CONV_WEIGHT
    if ("embedding" in name or "embed" in name) and "weight" in name:
        return ParameterType.EMBEDDING
    if "attn" in name or "attention" in name:
        if "bias" in name:
            return ParameterType.ATTENTION_BIAS
        if "in_proj" in name:
            return ParameterType.ATTENTION_QKV
        if "kv_proj" in name:
            return ParameterType.ATTENTION_KV
        if "k_proj" in name or "key" in name:
            return ParameterType.ATTENTION_K
        if "q_proj" in name or "query" in name:
            return ParameterType.ATTENTION_Q
        if "v_proj" in name or "value" in name:
            return ParameterType.ATTENTION_V
        if "out" in name and "weight" in name:
            return ParameterType.ATTENTION_OUT
        if "scale" in name:
            return ParameterType.WEIGHT
        raise ValueError(f"cannot infer the attention parameter type of {name!r}")
    if "bias" in name:
        return ParameterType.BIAS
    return ParameterType.WEIGHT


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class Workload:
    """A workload bound to a device, with the reference's public API.

    Args:
        config: the workload's constants.
        functions: the workload's code (registry entry).
        dist_info: the process's place.
        data_dir: where the prepared dataset lives.
        synthetic: generate batches of the right shapes instead of reading data.
        num_workers: data-loader worker processes per rank.
    """

    def __init__(
        self,
        config: WorkloadConfig,
        functions: WorkloadFunctions,
        dist_info: DistInfo,
        data_dir: str = "",
        synthetic: bool = False,
        num_workers: int = 0,
        synthetic_eval_examples: int | None = None,
    ) -> None:
        self.config = config
        self.functions = functions
        self.dist = dist_info
        self.data_dir = data_dir
        self.synthetic = synthetic
        self.num_workers = num_workers
        self.synthetic_eval_examples = synthetic_eval_examples
        self.metrics_logger = None  # set by the runner on rank 0
        # Tells evaluations apart (``DataRequest.eval_index``); the runner sets the global step.
        self.eval_index = 0
        self._param_shapes: dict[str, ShapeTuple] | None = None
        self._param_types: dict[str, ParameterType] | None = None
        self._model: nn.Module | None = None
        self._loss = functions.loss

    def compile_loss(self) -> None:
        """Run the loss through ``torch.compile`` (the workload YAML's ``model_and_loss``)."""
        self._loss = torch.compile(self.functions.loss)

    # --- constants, under the reference's names -------------------------------------------
    @property
    def workload_name(self) -> str:
        return self.config.name

    @property
    def target_metric_name(self) -> str:
        return self.config.target_metric

    @property
    def validation_target_value(self) -> float:
        return self.config.validation_target

    @property
    def test_target_value(self) -> float | None:
        return self.config.test_target

    @property
    def loss_type(self) -> LossType:
        return self.config.loss_type_enum

    @property
    def num_train_examples(self) -> int:
        return self.config.num_train_examples

    @property
    def num_eval_train_examples(self) -> int:
        return self.eval_examples("eval_train")

    @property
    def num_validation_examples(self) -> int:
        return self.eval_examples("validation")

    @property
    def num_test_examples(self) -> int | None:
        return self.eval_examples("test")

    @property
    def eval_batch_size(self) -> int:
        return self.config.eval_batch_size

    @property
    def train_mean(self) -> Any:
        return self.config.train_mean

    @property
    def train_stddev(self) -> Any:
        return self.config.train_stddev

    @property
    def max_allowed_runtime_sec(self) -> float:
        return self.config.max_runtime

    @property
    def eval_period_time_sec(self) -> float:
        return self.config.eval_period

    @property
    def step_hint(self) -> int:
        return self.config.step_hint

    @property
    def param_shapes(self) -> dict[str, ShapeTuple]:
        if self._param_shapes is None:
            raise ValueError("param_shapes is only known after init_model_fn() was called")
        return self._param_shapes

    @property
    def model_params_types(self) -> dict[str, ParameterType]:
        if self._param_types is None:
            raise ValueError("model_params_types is only known after init_model_fn() was called")
        return self._param_types

    def eval_examples(self, split: str) -> int | None:
        n = self.config.num_examples(split)
        if self.synthetic and n is not None and self.synthetic_eval_examples is not None:
            return min(n, self.synthetic_eval_examples)
        return n

    def has_reached_validation_target(self, eval_result: dict[str, float]) -> bool:
        value = eval_result.get(f"validation/{self.config.target_metric}")
        return self.config.reached(value, self.config.validation_target)

    def has_reached_test_target(self, eval_result: dict[str, float]) -> bool:
        value = eval_result.get(f"test/{self.config.target_metric}")
        return self.config.reached(value, self.config.test_target)

    def meta_data(self) -> dict[str, Any]:
        """Workload facts for the trial's meta data file (e.g. the compute dtype on this device)."""
        if self.functions.meta_data is None:
            return {}
        return self.functions.meta_data(self.config, self.dist.device)

    def is_output_params(self, param_key: str) -> bool:
        return self.functions.is_output_param(param_key)

    # --- model ------------------------------------------------------------------------------
    def init_model_fn(
        self, rng: Any, dropout_rate: float | None = None, aux_dropout_rate: float | None = None
    ) -> tuple[nn.Module, None]:
        """Seed torch with ``rng[0]``, build the model, record shapes/types, move, wrap in DDP.

        ``dropout_rate``/``aux_dropout_rate`` exist for v0.5-era submissions and are ignored:
        in v0.6 the rate is an argument of ``model_fn``.
        """
        if self.functions.reinit_in_place and self._model is not None:
            unwrap(self._model).reset_parameters()
            return self._model, None
        torch.random.manual_seed(int(rng[0]))
        model = self.functions.build_model(self.config)
        set_fast_kernels(model, self.config.fast_kernels)
        named = list(model.named_parameters())
        self._param_shapes = {k: ShapeTuple(tuple(p.shape)) for k, p in named}
        type_of = self.functions.param_type or param_type_from_name
        self._param_types = {k: type_of(k) for k, _ in named}
        model = model.to(self.dist.device)
        if self.dist.is_distributed:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        self._model = model
        return model, None

    def model_fn(
        self,
        params: nn.Module,
        augmented_and_preprocessed_input_batch: Batch,
        model_state: Any,
        mode: ForwardPassMode,
        rng: Any,
        update_batch_norm: bool,
        dropout_rate: float | None = None,
    ) -> tuple[Any, Any]:
        """Forward pass; EVAL runs under ``no_grad`` in eval mode (RULES.md §1.3)."""
        model = params
        batch = augmented_and_preprocessed_input_batch
        train = mode == ForwardPassMode.TRAIN
        if self.functions.uses_batch_norm:
            if not train and update_batch_norm:
                raise ValueError("update_batch_norm=True is not allowed in EVAL mode")
            if train:
                set_running_stats_update(unwrap(model), update_batch_norm)
        forward = self.functions.forward or _default_forward
        if train:
            model.train()
            return forward(model, batch, True, dropout_rate), model_state
        model.eval()
        with torch.no_grad():
            return forward(model, batch, False, dropout_rate), model_state

    def loss_fn(
        self,
        label_batch: Any,
        logits_batch: Any,
        mask_batch: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> LossOutput:
        """Summed loss, valid-example count and per-example losses on this rank."""
        return self._loss(self.config, label_batch, logits_batch, mask_batch, label_smoothing)

    def output_activation_fn(self, logits_batch: torch.Tensor, framework: str = "pytorch"):
        if self.loss_type in (LossType.SOFTMAX_CROSS_ENTROPY, LossType.CTC_LOSS):
            return torch.softmax(logits_batch, dim=-1)
        if self.loss_type == LossType.SIGMOID_CROSS_ENTROPY:
            return torch.sigmoid(logits_batch)
        return logits_batch

    # --- data -------------------------------------------------------------------------------
    def data_request(
        self, split: str, batch_size: int, seed: int, eval_index: int = 0
    ) -> DataRequest:
        """A request for this rank's share of ``split`` at the global ``batch_size``."""
        if batch_size % self.dist.world_size:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the world size "
                f"{self.dist.world_size}; choose a multiple of {self.dist.world_size}"
            )
        return DataRequest(
            split=split,
            data_dir=self.data_dir,
            batch_size=batch_size // self.dist.world_size,
            seed=seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_examples=None if split == "train" else self.eval_examples(split),
            num_workers=self.num_workers,
            device=self.dist.device,
            eval_index=eval_index,
        )

    def _build_input_queue(
        self,
        data_rng: Any,
        split: str,
        data_dir: str,
        global_batch_size: int,
        eval_index: int = 0,
    ) -> StatefulIterator:
        """The batches of ``split`` for this rank (the reference's forbidden-to-submissions hook)."""
        seed = int(data_rng[0])
        request = self.data_request(split, global_batch_size, seed, eval_index)
        if self.synthetic:
            return synthetic_iterator(self.config, self.functions, request)
        return self.functions.input_iterator(self.config, request)


def _default_forward(model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None):
    return model(batch["inputs"])
