"""The AlgoPerf LibriSpeech DeepSpeech model: log-mel -> conv subsampling -> 6 BiLSTMs -> 3 FFNs.

Mirrors ``DeepspeechEncoderDecoder`` [algoperf/workloads/librispeech_deepspeech/
librispeech_pytorch/models.py, workload.py] (WORKLOADS.md §7.1): the reference's module,
parameter and buffer names and its torch-RNG order. The reference builds the subsampling ``lin``
and the FFN ``lin``s as ``nn.LazyLinear`` and materialises them with a forward pass on
``torch.randn(2, 320000)``; here they are plain ``nn.Linear``s built without drawing, and
``_reference_init`` makes the same draws in the same order (the dummy audio, then each lazy
layer's default init, then xavier for every Linear), so the weights are bitwise the same with
no forward pass. BatchNorm statistics are all-reduced across ranks in training when
``torch.distributed`` is initialised with more than one rank (the reference decides this from
``LOCAL_RANK`` at import); the valid lengths go to the CPU once per forward for the packed
LSTMs (the reference syncs once per layer). Variants: ``use_tanh``,
``enable_residual_connections``, ``layernorm_everywhere`` + ``enable_decoder_layer_norm``.
18,393,600 parameters.

    python -m pytest tests/test_librispeech_models.py -k deepspeech
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from algoperf_torch.workloads.librispeech_conformer.frontend import NUM_BINS, LogMelFrontend
from algoperf_torch.workloads.librispeech_conformer.model import (
    Conv2dSubsampling,
    config_from_mapping,
    make_specaugment,
    masked_batch_norm,
    xavier_init,
)

# The reference's dummy batch for the LazyLinear forward [deepspeech workload.py init_model_fn].
_LAZY_INIT_AUDIO_SHAPE = (2, 320_000)


@dataclass(frozen=True)
class DeepspeechConfig:
    """The YAML ``model:`` keys (WORKLOADS.md §7.1; the reference's ``DeepspeechConfig``)."""

    vocab_size: int
    encoder_dim: int
    num_lstm_layers: int
    num_ffn_layers: int
    dropout_rate: float
    """Default of ``forward(dropout_rate=None)`` (the reference's ``DROPOUT_RATE``)."""
    batch_norm_momentum: float
    batch_norm_epsilon: float
    enable_residual_connections: bool
    enable_decoder_layer_norm: bool
    bidirectional: bool
    use_tanh: bool
    layernorm_everywhere: bool
    use_specaug: bool
    freq_mask_count: int
    freq_mask_max_bins: int
    time_mask_count: int
    time_mask_max_frames: int
    time_mask_max_ratio: float
    time_masks_per_frame: float
    use_dynamic_time_mask_max_frames: bool


def _linear_without_init(in_features: int, out_features: int) -> nn.Linear:
    """An ``nn.Linear`` whose construction draws nothing from the RNG (a LazyLinear's place)."""
    device = torch.empty(0).device  # the default device (meta when counting parameters)
    return nn.utils.skip_init(nn.Linear, in_features, out_features, device=device)


class LayerNorm(nn.Module):
    """DeepSpeech's hand-written LayerNorm: biased variance, (1 + ``scale``), eps 1e-6.

    Written out as the reference does (not ``F.layer_norm``) so the float32 rounding matches.
    """

    def __init__(self, dim: int, epsilon: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.epsilon = dim, epsilon
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.epsilon) * (1 + self.scale) + self.bias


def _sum_across_ranks(x: torch.Tensor) -> torch.Tensor:
    return dist_fn.all_reduce(x)  # autograd-aware: gradients flow through the global stats


class BatchNorm(nn.Module):
    """Masked BatchNorm (params ``weight``/``bias``, zero-init, used as 1 + weight).

    Args of the switches: ``update_running_stats`` False freezes the running statistics (the
    reference's ``update_batch_norm=False``); ``sync_across_ranks`` False keeps the batch
    statistics per rank even under DDP.
    """

    update_running_stats: bool = True
    sync_across_ranks: bool = True

    def __init__(self, dim: int, momentum: float, epsilon: float) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.momentum, self.epsilon, self.dim = momentum, epsilon, dim

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        sync = (
            self.training
            and self.sync_across_ranks
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        )
        return masked_batch_norm(
            self, x, paddings, self.weight, _sum_across_ranks if sync else None
        )


def _norm(cfg: DeepspeechConfig) -> tuple[str, nn.Module]:
    """(attribute name, module) of a layer's input norm; the names set the parameter types."""
    if cfg.layernorm_everywhere:
        return "normalization_layer", LayerNorm(cfg.encoder_dim)
    bn = BatchNorm(cfg.encoder_dim, cfg.batch_norm_momentum, cfg.batch_norm_epsilon)
    return "bn_normalization_layer", bn


class Subsample(nn.Module):
    """Two subsampling convs (÷4 in time and freq), ``lin`` to ``encoder_dim``, dropout."""

    def __init__(self, cfg: DeepspeechConfig, num_bins: int = NUM_BINS) -> None:
        super().__init__()
        act, d = "tanh" if cfg.use_tanh else "relu", cfg.encoder_dim
        self.conv1 = Conv2dSubsampling(1, d, act, paddings_kernel=False)
        self.conv2 = Conv2dSubsampling(d, d, act, paddings_kernel=False)
        freq = math.ceil(math.ceil(num_bins / 2) / 2)  # 80 -> 40 -> 20
        self.lin = _linear_without_init(d * freq, d)

    def forward(
        self, x: torch.Tensor, paddings: torch.Tensor, dropout_rate: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y, paddings = self.conv1(x[:, None], paddings)  # [B, D, T/2, 40]
        y, paddings = self.conv2(y, paddings)  # [B, D, T/4, 20]
        b, c, t, f = y.shape
        y = y.permute(0, 2, 3, 1).reshape(b, t, f * c)  # [B, T/4, 20·D], freq-major
        return F.dropout(self.lin(y), dropout_rate, self.training), paddings


class BatchRNN(nn.Module):
    """Norm, then a (bi)LSTM over each sequence's valid frames; padded frames output 0."""

    def __init__(self, cfg: DeepspeechConfig) -> None:
        super().__init__()
        name, norm = _norm(cfg)
        self.norm_name = name
        setattr(self, name, norm)
        d = cfg.encoder_dim
        hidden = d // 2 if cfg.bidirectional else d
        self.lstm = nn.LSTM(d, hidden, bidirectional=cfg.bidirectional, batch_first=True)

    def forward(
        self, x: torch.Tensor, paddings: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """x [B, T, D], paddings [B, T], lengths [B] int64 on the CPU -> [B, T, D]."""
        norm = getattr(self, self.norm_name)
        y = norm(x) if isinstance(norm, LayerNorm) else norm(x, paddings)
        packed = pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class FeedForwardModule(nn.Module):
    """Norm -> ``lin`` -> ReLU/tanh -> mask pads -> dropout."""

    def __init__(self, cfg: DeepspeechConfig) -> None:
        super().__init__()
        name, norm = _norm(cfg)
        self.norm_name = name
        setattr(self, name, norm)
        self.use_tanh = cfg.use_tanh
        self.lin = _linear_without_init(cfg.encoder_dim, cfg.encoder_dim)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        norm = getattr(self, self.norm_name)
        y = self.lin(norm(x) if isinstance(norm, LayerNorm) else norm(x, paddings))
        y = (torch.tanh(y) if self.use_tanh else F.relu(y)) * (1 - paddings)[:, :, None]
        return F.dropout(y, dropout_rate, self.training)


class DeepspeechEncoderDecoder(nn.Module):
    """Audio [B, T] + paddings -> CTC logits [B, T', vocab] + paddings [B, T'] (T' ≈ T / 640)."""

    def __init__(self, cfg: DeepspeechConfig) -> None:
        super().__init__()
        self.config = cfg
        self.specaug = make_specaugment(cfg)
        self.preprocessor = LogMelFrontend()
        self.subsample = Subsample(cfg)
        self.lstms = nn.ModuleList(BatchRNN(cfg) for _ in range(cfg.num_lstm_layers))
        self.ffns = nn.ModuleList(FeedForwardModule(cfg) for _ in range(cfg.num_ffn_layers))
        self.ln = LayerNorm(cfg.encoder_dim) if cfg.enable_decoder_layer_norm else nn.Identity()
        self.lin = nn.Linear(cfg.encoder_dim, cfg.vocab_size)
        self._reference_init()

    def _reference_init(self) -> None:
        """The reference's RNG draws after construction [deepspeech workload.py init_model_fn]:
        the dummy audio, each LazyLinear's default init in forward order, then xavier-uniform
        on every Linear (depth-first) with zero biases [conformer models.py ``initialize``]."""
        torch.randn(_LAZY_INIT_AUDIO_SHAPE)
        self.subsample.lin.reset_parameters()
        for ffn in self.ffns:
            ffn.lin.reset_parameters()
        xavier_init(self)

    def forward(
        self, audio: torch.Tensor, audio_paddings: torch.Tensor, dropout_rate: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rate = cfg.dropout_rate if dropout_rate is None else dropout_rate
        x, paddings = self.preprocessor(audio, audio_paddings)  # [B, F, 80]
        if self.training and cfg.use_specaug:
            x, paddings = self.specaug(x, paddings)
        x, paddings = self.subsample(x, paddings, rate)  # [B, T', D]
        lengths = (1 - paddings).sum(dim=1).to("cpu", torch.int64)  # one host sync
        for lstm in self.lstms:
            y = lstm(x, paddings, lengths)
            x = x + y if cfg.enable_residual_connections else y
        for ffn in self.ffns:
            y = ffn(x, paddings, rate)
            x = x + y if cfg.enable_residual_connections else y
        return self.lin(self.ln(x)), paddings


def build_deepspeech(model_cfg: Mapping[str, Any]) -> DeepspeechEncoderDecoder:
    """The DeepSpeech model from the YAML ``model:`` mapping (exactly ``DeepspeechConfig``'s keys)."""
    return DeepspeechEncoderDecoder(config_from_mapping(DeepspeechConfig, model_cfg))
