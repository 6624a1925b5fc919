"""The ``finewebedu_lm`` registry entry: the 250M decoder-only LM on FineWeb-Edu (WORKLOADS.md §13).

Forward and loss run under bf16 autocast on CUDA, as the reference's ``model_fn`` and ``loss_fn``
[finewebedu_lm_pytorch/workload.py @4c37f2aa]; on CPU they run in float32 (bf16 autocast on CPU
is slow, and the benchmark's numbers come from GPUs). The dtype used is written to the trial's
meta data (``compute_dtype``). The eval metric is the token-level cross-entropy (``loss``, mean
nats per valid token) and ``ppl`` = exp(loss); the target is met at ``ppl ≤ 22.2995``.

    python -m algoperf_torch workload=finewebedu_lm data.data_dir=~/data
    python -m algoperf_torch workload=finewebedu_lm data=synthetic max_steps=3 batch_size=2
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.spec import (
    Batch,
    LossOutput,
    ParameterType,
    WorkloadConfig,
    WorkloadFunctions,
)
from algoperf_torch.workload import param_type_from_name, unwrap
from algoperf_torch.workloads.finewebedu_lm import data
from algoperf_torch.workloads.finewebedu_lm.model import LMConfig, Transformer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_model(config: WorkloadConfig) -> Transformer:
    m = config.model
    return Transformer(
        LMConfig(
            vocab_size=int(m["vocab_size"]),
            seq_len=int(m["seq_len"]),
            model_dim=int(m["model_dim"]),
            num_heads=int(m["num_heads"]),
            num_layers=int(m["num_layers"]),
            mlp_dim=int(m["mlp_dim"]),
            multiple_of=int(m["multiple_of"]),
            rmsnorm_eps=float(m["rmsnorm_eps"]),
            qknorm_eps=float(m["qknorm_eps"]),
            rope_theta=float(m["rope_theta"]),
            tie_embeddings=bool(m["tie_embeddings"]),
            compute_dtype=str(m["compute_dtype"]),
        )
    )


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype ``name`` (bf16 in the YAML) on CUDA; float32 elsewhere."""
    if name not in DTYPES:
        raise ValueError(f"model.compute_dtype={name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[name] if device.type == "cuda" else torch.float32


def _autocast(name: str, device: torch.device):
    dtype = compute_dtype(name, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def forward(model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None):
    """Logits [B, L, V]; ``dropout_rate`` is ignored (the model has no dropout), one-hot inputs
    [B, L, V] are turned into ids as the reference's ``model_fn`` does."""
    inputs = batch["inputs"]
    if inputs.dim() == 3:
        inputs = inputs.argmax(dim=-1)
    with _autocast(unwrap(model).cfg.compute_dtype, inputs.device):
        return model(inputs)


def loss(
    config: WorkloadConfig,
    label_batch: torch.Tensor,
    logits_batch: torch.Tensor,
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Per-token cross-entropy [B, L] with label smoothing (target (1−ε)·onehot + ε/V), masked
    by ``mask_batch``; ``n_valid_examples`` = Σ mask, or B·L (float) without a mask
    [finewebedu_lm_pytorch/workload.py ``loss_fn``]."""
    with _autocast(str(config.model["compute_dtype"]), logits_batch.device):
        vocab = logits_batch.size(-1)
        per_token = F.cross_entropy(
            logits_batch.reshape(-1, vocab),
            label_batch.reshape(-1),
            reduction="none",
            label_smoothing=label_smoothing,
        ).view_as(label_batch)
        if mask_batch is not None:
            per_token = per_token * mask_batch
            n_valid = mask_batch.sum()
        else:
            n_valid = torch.tensor(
                label_batch.numel(), dtype=torch.float32, device=label_batch.device
            )
    return LossOutput(per_token.sum(), n_valid, per_token)


class TokenCrossEntropy:
    """Eval metric: summed token cross-entropy and the number of valid tokens, over batches and
    ranks; ``loss`` = their ratio (nats per token), ``ppl`` = exp(loss). ``num_examples`` is not
    used: the normalisation is per token, as the reference's ``_normalize_eval_metrics``."""

    def __init__(self, config: WorkloadConfig) -> None:
        self.config = config
        self._loss = torch.zeros((), dtype=torch.float64)
        self._tokens = torch.zeros((), dtype=torch.float64)

    def update(self, logits: torch.Tensor, batch: Batch) -> None:
        out = loss(self.config, batch["targets"], logits, batch.get("weights"))
        self._loss += out.summed.detach().double().cpu()
        self._tokens += out.n_valid_examples.detach().double().cpu()

    def state(self) -> dict[str, torch.Tensor]:
        return {"loss": self._loss, "denominator": self._tokens}

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]:
        tokens = float(state["denominator"])
        if tokens == 0:
            raise ValueError("finewebedu_lm eval: the split had no valid (unmasked) tokens")
        mean = float(state["loss"]) / tokens
        return {"loss": mean, "ppl": math.exp(mean)}


def param_type(name: str) -> ParameterType:
    """The reference's name rules, plus ``w_qkv`` -> ATTENTION_QKV.

    At v0.6 [algoperf/param_utils.py @2c90454f] ``…attn.w_qkv.weight`` matches no attention
    rule (they raise); upstream must have changed the rules, unseen (WORKLOADS.md §13.1). The
    fused q|k|v projection is what ATTENTION_QKV means, so we choose it (unverified).
    """
    if name.endswith("attn.w_qkv.weight"):
        return ParameterType.ATTENTION_QKV
    return param_type_from_name(name)


def meta_data(config: WorkloadConfig, device: torch.device) -> dict[str, Any]:
    dtype = compute_dtype(str(config.model["compute_dtype"]), device)
    return {"compute_dtype": str(dtype).removeprefix("torch.")}


def make_metric(config: WorkloadConfig) -> TokenCrossEntropy:
    return TokenCrossEntropy(config)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=loss,
    make_metric=make_metric,
    forward=forward,
    # [finewebedu_lm_pytorch/workload.py]: 'lm_head.weight' is tied, so never a named parameter.
    is_output_param=lambda name: "lm_head.weight" in name or "lm_head.bias" in name,
    reinit_in_place=True,
    param_type=param_type,
    eval_weights=True,
    meta_data=meta_data,
)
