"""The WMT encoder-decoder Transformer as the AlgoPerf reference builds it (133,521,408 params).

Mirrors [algoperf/workloads/wmt/wmt_pytorch/models.py] (WORKLOADS.md §9.1): module names
(``shared_embedding``, ``encoder.encoder.layers.<i>.{self_attn.in_proj, self_attn.out_proj,
linear1, [linear_glu], linear2, norm1, norm2}``, ``encoder.encoder.norm``,
``decoder.decoder.layers.<i>.{self_attn, multihead_attn.{q_proj, kv_proj, out_proj}, linear1,
[linear_glu], linear2, norm1..3}``, ``decoder.decoder.norm``) and the torch-RNG order of init: the
embedding, **one** encoder-layer template (each attention re-draws xavier right after its default
init) deep-copied ``nlayers`` times, the decoder layers built one by one, then a final xavier
re-draw of every ``nn.Linear`` (biases N(0, 1e-6)) in ``modules()`` order. The embedding is tied
to the output projection (logits = h · Eᵀ / sqrt(d)). Masks are additive (-1e10) float masks,
so a fully masked padding row attends uniformly, exactly as the reference. Decoding with a
key/value cache lives in ``decode.py``; this file gives it ``encode`` and ``decode_step``.

    python -m pytest tests/test_wmt_model.py
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEG_MASK = -1e10  # the reference's additive mask value (not -inf: padding rows stay finite)


@dataclass(frozen=True)
class TransformerConfig:
    ntoken: int = 32000
    d_model: int = 1024
    nhead: int = 16
    d_hid: int = 1024
    nlayers: int = 6
    activation: str = "relu"  # "relu" or "tanh" (wmt_glu_tanh)
    glu: bool = False
    layer_norm_eps: float = 1e-6
    attention_temp: float = 1.0
    pre_ln: bool = True
    max_len: int = 256
    dropout_rate: float = 0.1  # the reference's DROPOUT_RATE, used when a call passes None


ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh}


def additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """[B, L, S] bool (True = may attend) -> [B, 1, L, S] float: 0 or -1e10, one for all heads."""
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    return mask.masked_fill_(~allowed, NEG_MASK).unsqueeze(1)


def encoder_mask(src: torch.Tensor, src_seg: torch.Tensor | None) -> torch.Tensor:
    """Non-pad query and key, same packed segment [models.py ``make_src_mask``]."""
    allowed = (src > 0).unsqueeze(-1) & (src > 0).unsqueeze(-2)
    if src_seg is not None:
        allowed &= src_seg.unsqueeze(-1) == src_seg.unsqueeze(-2)
    return additive_mask(allowed)


def decoder_masks(
    tgt: torch.Tensor,
    src: torch.Tensor,
    src_seg: torch.Tensor | None,
    tgt_seg: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal self-attention and cross-attention masks, from the *unshifted* targets
    [models.py ``make_tgt_and_memory_mask``]; segments count only when inputs are packed."""
    n = tgt.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=tgt.device).tril()
    self_allowed = (tgt > 0).unsqueeze(-1) & (tgt > 0).unsqueeze(-2) & causal
    cross_allowed = (tgt > 0).unsqueeze(-1) & (src > 0).unsqueeze(-2)
    if src_seg is not None:
        self_allowed &= tgt_seg.unsqueeze(-1) == tgt_seg.unsqueeze(-2)
        cross_allowed &= tgt_seg.unsqueeze(-1) == src_seg.unsqueeze(-2)
    return additive_mask(self_allowed), additive_mask(cross_allowed)


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Teacher-forcing input: a 0 in front, the last token dropped. It ignores packing, so a later
    packed segment starts with the previous segment's EOS (as the reference and the JAX code)."""
    return F.pad(x, (1, 0))[:, :-1]


class PositionalEncoding(nn.Module):
    """Fixed sinusoids [1, max_len, d]: sin in the first half, cos in the second."""

    def __init__(self, d_model: int, max_len: int = 256) -> None:
        super().__init__()
        half = d_model // 2
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(half) * (-math.log(10000.0) / (half - 1)))
        pe = torch.zeros(1, max_len, d_model)
        pe[0, :, :half] = torch.sin(position * div_term)
        pe[0, :, half : 2 * half] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor | None, dropout_rate: float
    ) -> torch.Tensor:
        # Packed rows carry per-token positions; otherwise positions are 0..L-1.
        pe = self.pe[:, : x.size(1)] if positions is None else self.pe[0, positions]
        return F.dropout(x + pe, dropout_rate, self.training)


class MultiheadAttention(nn.Module):
    """Bias-free attention: fused ``in_proj`` for self-attention, ``q_proj`` + ``kv_proj`` for
    cross-attention, ``out_proj``; queries scaled by ``attention_temp`` before SDPA."""

    def __init__(self, d_model: int, nhead: int, self_attn: bool, attention_temp: float) -> None:
        super().__init__()
        self.d_model, self.nhead, self.head_dim = d_model, nhead, d_model // nhead
        if self.head_dim * nhead != d_model:
            raise ValueError(f"d_model={d_model} is not divisible by nhead={nhead}")
        self.self_attn = self_attn
        self.attention_temp = attention_temp
        if self_attn:
            self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        else:
            self.q_proj = nn.Linear(d_model, d_model, bias=False)
            self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        # The reference re-draws xavier here, right after the default init (torch-RNG order).
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, d] -> [B, h, L, d/h]."""
        return x.view(x.size(0), x.size(1), self.nhead, self.head_dim).transpose(1, 2)

    def project_kv(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values of the encoder output, each [B, h, S, d/h]."""
        k, v = self.kv_proj(mem).split(self.d_model, dim=2)
        return self.heads(k), self.heads(v)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        dropout_rate: float,
    ) -> torch.Tensor:
        """q [B, L, d] (unsplit), k/v [B, h, S, d/h] -> [B, L, d] after ``out_proj``."""
        bsz, length, _ = q.shape
        q = self.attention_temp * self.heads(q)
        p = dropout_rate if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, mask, p)
        return self.out_proj(out.transpose(1, 2).reshape(bsz, length, self.d_model))

    def forward(
        self,
        x: torch.Tensor,
        mem: torch.Tensor | None,
        mask: torch.Tensor | None,
        dropout_rate: float,
    ) -> torch.Tensor:
        if self.self_attn:
            q, k, v = self.in_proj(x).split(self.d_model, dim=2)
            k, v = self.heads(k), self.heads(v)
        else:
            q = self.q_proj(x)
            k, v = self.project_kv(mem)
        return self.attend(q, k, v, mask, dropout_rate)


class FeedForward(nn.Module):
    """Mixin for the two layer kinds: Linear -> act [⊙ linear_glu] -> Drop -> Linear -> Drop."""

    def _ff_block(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        h = self.activation(self.linear1(x))
        if self.glu:
            h = h * self.linear_glu(x)
        h = self.linear2(F.dropout(h, dropout_rate, self.training))
        return F.dropout(h, dropout_rate, self.training)

    def _build_ff(self, cfg: TransformerConfig) -> None:
        self.linear1 = nn.Linear(cfg.d_model, cfg.d_hid)
        self.glu = cfg.glu
        if cfg.glu:
            self.linear_glu = nn.Linear(cfg.d_model, cfg.d_hid)
        self.linear2 = nn.Linear(cfg.d_hid, cfg.d_model)
        self.activation = ACTIVATIONS[cfg.activation]


class TransformerEncoderLayer(FeedForward):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(cfg.d_model, cfg.nhead, True, cfg.attention_temp)
        self._build_ff(cfg)
        self.pre_ln = cfg.pre_ln
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def _sa_block(self, x: torch.Tensor, mask: torch.Tensor, rate: float) -> torch.Tensor:
        return F.dropout(self.self_attn(x, None, mask, rate), rate, self.training)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rate: float) -> torch.Tensor:
        if self.pre_ln:
            x = x + self._sa_block(self.norm1(x), mask, rate)
            return x + self._ff_block(self.norm2(x), rate)
        x = self.norm1(x + self._sa_block(x, mask, rate))
        return self.norm2(x + self._ff_block(x, rate))


class TransformerDecoderLayer(FeedForward):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(cfg.d_model, cfg.nhead, True, cfg.attention_temp)
        self.multihead_attn = MultiheadAttention(cfg.d_model, cfg.nhead, False, cfg.attention_temp)
        self._build_ff(cfg)
        self.pre_ln = cfg.pre_ln
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.norm3 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        self_attention: Callable[[torch.Tensor], torch.Tensor],
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        cross_mask: torch.Tensor,
        rate: float,
    ) -> torch.Tensor:
        """``self_attention(h) -> attention output``: full causal or one cached step."""
        drop = lambda y: F.dropout(y, rate, self.training)  # noqa: E731
        cross = lambda h: self.multihead_attn.attend(  # noqa: E731
            self.multihead_attn.q_proj(h), *cross_kv, cross_mask, rate
        )
        if self.pre_ln:
            x = x + drop(self_attention(self.norm1(x)))
            x = x + drop(cross(self.norm2(x)))
            return x + self._ff_block(self.norm3(x), rate)
        x = self.norm1(x + drop(self_attention(x)))
        x = self.norm2(x + drop(cross(x)))
        return self.norm3(x + self._ff_block(x, rate))


class TransformerEncoder(nn.Module):
    """``nlayers`` deep copies of one template layer (no RNG draws: all start identical)."""

    def __init__(self, layer: TransformerEncoderLayer, nlayers: int, norm: nn.Module | None):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(nlayers)])
        self.norm = norm


class Encoder(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        layer = TransformerEncoderLayer(cfg)
        norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.pre_ln else None
        self.encoder = TransformerEncoder(layer, cfg.nlayers, norm)


class TransformerDecoder(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([TransformerDecoderLayer(cfg) for _ in range(cfg.nlayers)])
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.pre_ln else None


class Decoder(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.decoder = TransformerDecoder(cfg)


class Transformer(nn.Module):
    """Encoder-decoder with a tied embedding; ``forward`` is the teacher-forced training pass."""

    def __init__(self, cfg: TransformerConfig = TransformerConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_encoder = PositionalEncoding(cfg.d_model, cfg.max_len)
        self.shared_embedding = nn.Embedding(cfg.ntoken, cfg.d_model)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # The reference also hangs the shared modules under encoder/decoder (state_dict keys).
        for part in (self.encoder, self.decoder):
            part.pos_encoder = self.pos_encoder
            part.shared_embedding = self.shared_embedding
        self.reset_linears()

    def reset_linears(self) -> None:
        """Xavier-uniform weights, N(0, 1e-6) biases, in ``modules()`` order."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.normal_(module.bias, std=1e-6)

    def _rate(self, dropout_rate: float | None) -> float:
        return self.cfg.dropout_rate if dropout_rate is None else float(dropout_rate)

    def encode(
        self,
        src: torch.Tensor,
        positions: torch.Tensor | None = None,
        segmentation: torch.Tensor | None = None,
        dropout_rate: float | None = 0.0,
    ) -> torch.Tensor:
        """src [B, S] ids -> memory [B, S, d]."""
        rate = self._rate(dropout_rate)
        mask = encoder_mask(src, segmentation)
        x = self.pos_encoder(self.shared_embedding(src), positions, rate)
        enc = self.encoder.encoder
        for layer in enc.layers:
            x = layer(x, mask, rate)
        return x if enc.norm is None else enc.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Decoder output [.., d] -> logits [.., ntoken] through the tied embedding."""
        h = h if self.decoder.decoder.norm is None else self.decoder.decoder.norm(h)
        return torch.matmul(h, self.shared_embedding.weight.T) / math.sqrt(h.shape[-1])

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        inputs_positions: torch.Tensor | None = None,
        targets_positions: torch.Tensor | None = None,
        inputs_segmentation: torch.Tensor | None = None,
        targets_segmentation: torch.Tensor | None = None,
        dropout_rate: float | None = None,
    ) -> torch.Tensor:
        """src, tgt [B, L] ids (+ packing positions/segments) -> logits [B, L, ntoken]."""
        rate = self._rate(dropout_rate)
        memory = self.encode(src, inputs_positions, inputs_segmentation, rate)
        self_mask, cross_mask = decoder_masks(tgt, src, inputs_segmentation, targets_segmentation)
        x = self.pos_encoder(self.shared_embedding(shift_right(tgt)), targets_positions, rate)
        for layer in self.decoder.decoder.layers:
            sa = layer.self_attn
            kv = layer.multihead_attn.project_kv(memory)
            x = layer(x, lambda h, sa=sa: sa(h, None, self_mask, rate), kv, cross_mask, rate)
        return self.logits(x)
