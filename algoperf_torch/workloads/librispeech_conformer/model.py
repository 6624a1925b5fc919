"""The AlgoPerf LibriSpeech Conformer: raw audio -> log-mel -> 4 Conformer blocks -> CTC logits.

Mirrors ``ConformerEncoderDecoder`` [algoperf/workloads/librispeech_conformer/librispeech_pytorch/
models.py] (WORKLOADS.md §6.1): the reference's module, parameter and buffer names (so parameter
types and state dicts match), its init and torch-RNG order: the subsampling kernels draw xavier
at construction, every ``nn.Linear``/``nn.Conv1d`` draws torch's default init as it is built, then
``reset_parameters`` redraws xavier for each of them in depth-first order; norms and the
``QueryScaler`` start at 0. Dropout is in place where the reference's is (the same masks
on CUDA too). Differences: attention runs through ``scaled_dot_product_attention`` with whatever
kernel torch picks (the reference forces the math kernel on CUDA); the BN running statistics
are updated in place and can be frozen with ``update_running_stats``. Variants:
``attention_temperature``, ``use_post_layer_norm``, ``activation`` (swish | gelu).
32,321,792 parameters.

    python -m pytest tests/test_librispeech_models.py -k conformer
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.workloads.librispeech_conformer.frontend import NUM_BINS, LogMelFrontend
from algoperf_torch.workloads.librispeech_conformer.specaugment import SpecAugment

_Config = TypeVar("_Config")


def config_from_mapping(cls: type[_Config], model_cfg: Mapping[str, Any]) -> _Config:
    """``cls(**model_cfg)`` where the keys must be exactly ``cls``'s fields (else ValueError)."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing, unknown = sorted(set(names) - set(model_cfg)), sorted(set(model_cfg) - set(names))
    if missing or unknown:
        raise ValueError(
            f"{cls.__name__}: model config missing {missing}, unknown {unknown}; "
            f"expected exactly the keys {names}"
        )
    return cls(**model_cfg)


@dataclass(frozen=True)
class ConformerConfig:
    """The YAML ``model:`` keys (WORKLOADS.md §6.1; the reference's ``ConformerConfig``)."""

    vocab_size: int
    encoder_dim: int
    num_attention_heads: int
    num_encoder_layers: int
    convolution_kernel_size: int
    feed_forward_expansion_factor: int
    attention_dropout_rate: float
    feed_forward_dropout_rate: float
    dropout_rate: float
    """Default of ``forward(dropout_rate=None)`` (the reference's ``DROPOUT_RATE``)."""
    batch_norm_momentum: float
    batch_norm_epsilon: float
    activation: str
    attention_temperature: float
    use_post_layer_norm: bool
    use_specaug: bool
    freq_mask_count: int
    freq_mask_max_bins: int
    time_mask_count: int
    time_mask_max_frames: int
    time_mask_max_ratio: float
    time_masks_per_frame: float
    use_dynamic_time_mask_max_frames: bool

    def __post_init__(self) -> None:
        if self.activation not in ("swish", "gelu"):
            raise ValueError(f"activation={self.activation!r}; expected 'swish' or 'gelu'")


def make_specaugment(cfg: Any) -> SpecAugment:
    """SpecAugment from the config fields both speech models share."""
    return SpecAugment(
        freq_mask_count=cfg.freq_mask_count,
        freq_mask_max_bins=cfg.freq_mask_max_bins,
        time_mask_count=cfg.time_mask_count,
        time_mask_max_frames=cfg.time_mask_max_frames,
        time_mask_max_ratio=cfg.time_mask_max_ratio,
        time_masks_per_frame=cfg.time_masks_per_frame,
        use_dynamic_time_mask_max_frames=cfg.use_dynamic_time_mask_max_frames,
    )


class LayerNorm(nn.Module):
    """LayerNorm with zero-initialised ``scale`` applied as (1 + scale); eps 1e-6."""

    def __init__(self, dim: int, epsilon: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.epsilon = dim, epsilon
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), 1 + self.scale, self.bias, self.epsilon)


def _same_padding(size: int, stride: int = 2, kernel: int = 3) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one axis."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


class Conv2dSubsampling(nn.Module):
    """3×3 stride-2 "SAME" convolution + activation over (time, freq); halves the paddings.

    ``kernel`` draws xavier-uniform at construction, as the reference. ``paddings_kernel`` is
    the reference Conformer's unused [1, 1, 1] buffer, kept so its state dicts load.
    """

    def __init__(
        self, in_channels: int, out_channels: int, activation: str, paddings_kernel: bool
    ) -> None:
        super().__init__()
        self.activation = activation
        self.kernel = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(out_channels, in_channels, 3, 3))
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if paddings_kernel:
            self.register_buffer("paddings_kernel", torch.ones(1, 1, 1))

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T, F], paddings [B, T] -> [B, C', ⌈T/2⌉, ⌈F/2⌉], paddings [B, ⌈T/2⌉]."""
        top, bottom = _same_padding(x.shape[2])
        left, right = _same_padding(x.shape[3])
        y = F.conv2d(F.pad(x, (left, right, top, bottom)), self.kernel, self.bias, stride=2)
        y = torch.tanh(y) if self.activation == "tanh" else F.relu(y)
        out_paddings = paddings[:, ::2]  # = the reference's stride-2 conv with a ones kernel
        return y * (1 - out_paddings[:, None, :, None]), out_paddings


class AddPositionalEmbedding(nn.Module):
    """1-D sinusoidal position encoding: sin on the first half of the dims, cos on the second."""

    def __init__(self, embedding_dim: int, min_timescale: float = 1, max_timescale: float = 1e4):
        super().__init__()
        num_timescales = embedding_dim // 2
        increment = math.log(float(max_timescale) / float(min_timescale)) / (num_timescales - 1)
        inv = min_timescale * torch.exp(
            torch.arange(num_timescales, dtype=torch.float32) * -increment
        )
        self.register_buffer("inv_timescales", inv[None, None, :])  # [1, 1, dim / 2]

    def forward(self, seq_length: int) -> torch.Tensor:
        position = torch.arange(seq_length, dtype=torch.float32, device=self.inv_timescales.device)
        scaled_time = position[None, :, None] * self.inv_timescales  # [1, T, dim / 2]
        return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=2)


class Subsample(nn.Module):
    """Two subsampling convs (÷4 in time and freq), Linear to ``encoder_dim``, positions, dropout."""

    def __init__(self, encoder_dim: int, num_bins: int = NUM_BINS) -> None:
        super().__init__()
        self.conv1 = Conv2dSubsampling(1, encoder_dim, "relu", paddings_kernel=True)
        self.conv2 = Conv2dSubsampling(encoder_dim, encoder_dim, "relu", paddings_kernel=True)
        self.linear = nn.Linear(encoder_dim * num_bins // 4, encoder_dim)
        self.pos_encode = AddPositionalEmbedding(encoder_dim)

    def forward(
        self, x: torch.Tensor, paddings: torch.Tensor, dropout_rate: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        y, paddings = self.conv1(x[:, None], paddings)  # [B, D, T/2, 40]
        y, paddings = self.conv2(y, paddings)  # [B, D, T/4, 20]
        b, c, t, f = y.shape
        y = y.permute(0, 2, 3, 1).reshape(b, t, f * c)  # [B, T/4, 20·D], freq-major
        y = self.linear(y) + self.pos_encode(t)
        return F.dropout(y, dropout_rate, self.training, inplace=True), paddings


def _activation(name: str, approximate_gelu: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "swish":
        return F.silu
    # The reference uses tanh-GELU in the FF module and exact GELU in the conv module.
    return lambda x: F.gelu(x, approximate="tanh" if approximate_gelu else "none")


class FeedForwardModule(nn.Module):
    """LN -> Linear(D, 4D) -> act -> (dropout 0.0) -> mask -> Linear(4D, D) -> mask -> dropout."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d, hidden = cfg.encoder_dim, cfg.encoder_dim * cfg.feed_forward_expansion_factor
        self.inner_dropout = cfg.feed_forward_dropout_rate
        self.act = _activation(cfg.activation, approximate_gelu=True)
        self.ln = LayerNorm(d)
        self.linear1 = nn.Linear(d, hidden)
        self.linear2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        y = self.act(self.linear1(self.ln(x)))
        y = F.dropout(y, self.inner_dropout, self.training, inplace=True)
        y = self.linear2(y * keep) * keep
        return F.dropout(y, dropout_rate, self.training, inplace=True)


class QueryScaler(nn.Module):
    """Per-dimension query scale 1.442695041·softplus(s) (= 1 at the zero init)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.442695041 * F.softplus(self.scale))


class MHSAwithQS(nn.Module):
    """Self-attention with a fused ``in_proj``, query scaling and a key-padding mask."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.embed_dim, self.num_heads = cfg.encoder_dim, cfg.num_attention_heads
        self.attention_dropout_rate = cfg.attention_dropout_rate
        self.attention_temperature = cfg.attention_temperature
        self.in_proj = nn.Linear(cfg.encoder_dim, 3 * cfg.encoder_dim)
        self.out_proj = nn.Linear(cfg.encoder_dim, cfg.encoder_dim)
        self.qs = QueryScaler(cfg.encoder_dim // cfg.num_attention_heads)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], key_padding_mask [B, T] (True = pad) -> [B, T, D]."""
        b, t, d = x.shape
        q, k, v = self.in_proj(x).split(self.embed_dim, dim=2)
        q = self.qs(q.view(b, t, self.num_heads, -1)).transpose(1, 2)  # [B, H, T, D/H]
        k = k.view(b, t, self.num_heads, -1).transpose(1, 2)
        v = v.view(b, t, self.num_heads, -1).transpose(1, 2)
        p = self.attention_dropout_rate if self.training else 0.0
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=~key_padding_mask[:, None, None], dropout_p=p
        )
        out = out.transpose(1, 2).reshape(b, t, d) * self.attention_temperature
        return self.out_proj(out)


class MultiHeadedSelfAttention(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.ln = LayerNorm(cfg.encoder_dim)
        self.self_attention = MHSAwithQS(cfg)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        y = self.self_attention(self.ln(x), key_padding_mask=paddings == 1)
        return F.dropout(y, dropout_rate, self.training, inplace=True)


def masked_batch_norm(
    bn: nn.Module,
    x: torch.Tensor,
    paddings: torch.Tensor,
    weight: torch.Tensor,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """BatchNorm over the non-padded (batch, time) positions of x [B, T, D]; pads output 0.

    Training: biased mean/var of the valid positions (sums ``all_reduce``d across ranks when
    given), running stats r <- (1 - m)·r + m·batch unless ``bn.update_running_stats`` is False.
    Eval: running stats. Output (x - mean)·(1 + weight)·rsqrt(var + eps) + bias.
    """
    keep = 1 - paddings[:, :, None]
    if bn.training:
        count = keep.sum()
        masked = x.masked_fill(keep == 0, 0)
        total = masked.sum(dim=(0, 1))
        if all_reduce is not None:
            total, count = all_reduce(total), all_reduce(count)
        mean = total / count
        total = (torch.square(masked - mean) * keep).sum(dim=(0, 1))
        var = (all_reduce(total) if all_reduce is not None else total) / count
        if bn.update_running_stats:
            with torch.no_grad():
                bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean.detach())
                bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * var.detach())
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = (1 + weight) * torch.rsqrt(var + bn.epsilon)
    return ((x - mean) * scale + bn.bias).masked_fill(keep == 0, 0)


class MaskedBatchNorm(nn.Module):
    """The Conformer's BatchNorm over valid frames: params ``scale``/``bias`` (zero-init).

    ``update_running_stats = False`` is the reference's ``update_batch_norm=False``: batch
    statistics still normalise, running statistics stay. ``dim`` is the reference's unused
    buffer, kept so its state dicts load.
    """

    update_running_stats: bool = True

    def __init__(self, dim: int, momentum: float, epsilon: float) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.scale = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("dim", torch.tensor([float(dim)]))
        self.momentum, self.epsilon = momentum, epsilon

    def forward(self, x: torch.Tensor, paddings: torch.Tensor) -> torch.Tensor:
        return masked_batch_norm(self, x, paddings, self.scale)


class ConvolutionBlock(nn.Module):
    """LN -> GLU(lin1, lin2) -> mask -> depthwise conv (k 5) -> masked BN -> act -> lin3 -> dropout."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d = cfg.encoder_dim
        self.act = _activation(cfg.activation, approximate_gelu=False)
        self.ln = LayerNorm(d)
        self.lin1 = nn.Linear(d, d)
        self.lin2 = nn.Linear(d, d)
        self.conv1 = nn.Conv1d(
            d, d, cfg.convolution_kernel_size, padding="same", bias=False, groups=d
        )
        self.bn = MaskedBatchNorm(d, cfg.batch_norm_momentum, cfg.batch_norm_epsilon)
        self.lin3 = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, paddings: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        y = self.ln(x)
        y = F.glu(torch.cat([self.lin1(y), self.lin2(y)], dim=2)) * (1 - paddings[:, :, None])
        y = self.conv1(y.permute(0, 2, 1)).permute(0, 2, 1)  # conv over time: [B, D, T]
        y = self.lin3(self.act(self.bn(y, paddings)))
        return F.dropout(y, dropout_rate, self.training, inplace=True)


class ConformerBlock(nn.Module):
    """x += ½FF(x); x += MHSA(x); x += Conv(x); x += ½FF(x); then LN (unless the variant)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.ff1 = FeedForwardModule(cfg)
        self.mhsa = MultiHeadedSelfAttention(cfg)
        self.conv = ConvolutionBlock(cfg)
        self.ff2 = FeedForwardModule(cfg)
        self.ln = LayerNorm(cfg.encoder_dim) if cfg.use_post_layer_norm else None

    def forward(self, x: torch.Tensor, paddings: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        keep = 1 - paddings[:, :, None]
        x = x + 0.5 * self.ff1(x, keep, dropout_rate)
        x = x + self.mhsa(x, paddings, dropout_rate)
        x = x + self.conv(x, paddings, dropout_rate)
        x = x + 0.5 * self.ff2(x, keep, dropout_rate)
        return x if self.ln is None else self.ln(x)


class ConformerEncoderDecoder(nn.Module):
    """Audio [B, T] + paddings -> CTC logits [B, T', vocab] + paddings [B, T'] (T' ≈ T / 640)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.preprocessor = LogMelFrontend()
        self.specaug = make_specaugment(cfg)
        self.subsample = Subsample(cfg.encoder_dim)
        self.conformers = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_encoder_layers))
        self.ln = LayerNorm(cfg.encoder_dim)
        self.lin = nn.Linear(cfg.encoder_dim, cfg.vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        xavier_init(self)

    def forward(
        self, audio: torch.Tensor, audio_paddings: torch.Tensor, dropout_rate: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rate = self.config.dropout_rate if dropout_rate is None else dropout_rate
        x, paddings = self.preprocessor(audio, audio_paddings)  # [B, F, 80]
        if self.training and self.config.use_specaug:
            x, paddings = self.specaug(x, paddings)
        x, paddings = self.subsample(x, paddings, rate)  # [B, T', D]
        for block in self.conformers:
            x = block(x, paddings, rate)
        return self.lin(self.ln(x)), paddings


def xavier_init(model: nn.Module) -> None:
    """Xavier-uniform on every Linear/Conv1d weight (depth-first), zero biases; the reference's
    ``initialize``, which its DeepSpeech imports from the Conformer [conformer models.py]."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_conformer(model_cfg: Mapping[str, Any]) -> ConformerEncoderDecoder:
    """The Conformer from the YAML ``model:`` mapping (exactly ``ConformerConfig``'s keys)."""
    return ConformerEncoderDecoder(config_from_mapping(ConformerConfig, model_cfg))
