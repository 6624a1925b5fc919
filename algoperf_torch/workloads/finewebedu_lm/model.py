"""The finewebedu_lm decoder-only Transformer (250M parameters), as the AlgoPerf reference builds it.

Mirrors [algoperf/workloads/finewebedu_lm/finewebedu_lm_pytorch/models.py @4c37f2aa] (WORKLOADS.md
§13.1): token embedding, 12 pre-RMSNorm blocks of attention (interleaved RoPE with base 500,000,
QK-norm, a learnable logit scale ``attn_scale``, causal SDPA with ``scale=1``) and a sigmoid-GLU
MLP, a final RMSNorm and an ``lm_head`` tied to the embedding; no biases, no dropout.

Module names, registration order and the torch-RNG order of initialisation are the reference's:
every ``nn.Linear``/``nn.Embedding`` draws its torch-default init when constructed (in
``__init__`` order), the attention redraws the three q/k/v chunks of ``w_qkv`` and ``w_out``
from N(0, 0.02) and the MLP ``fc1`` and ``fc2`` right away; then ``reset_parameters`` redraws
every Linear and the embedding from N(0, 0.02) (``Module.apply`` order, ``lm_head`` included) and
``w_out``/``fc2`` from N(0, 0.02/sqrt(2·layers)); the tie comes last, so the embedding keeps its
own draw. 86 named tensors, 252,815,372 parameters at full size.

    python -m pytest tests/test_finewebedu_lm_model.py
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LMConfig:
    """Model shape; the workload YAML's ``model:`` block (defaults: the full 250M model)."""

    vocab_size: int = 50257
    seq_len: int = 1024
    model_dim: int = 1024
    num_heads: int = 8
    num_layers: int = 12
    mlp_dim: int = 4096
    multiple_of: int = 256
    rmsnorm_eps: float = 1e-6
    qknorm_eps: float = 1e-6
    rope_theta: float = 500_000.0
    tie_embeddings: bool = True
    compute_dtype: str = "bfloat16"
    """Autocast dtype of the forward pass on CUDA (read by the workload's ``forward``; the
    reference's ``ModelConfig.compute_dtype``); the module itself never casts."""


def rope_table(head_dim: int, seq_len: int, theta: float) -> torch.Tensor:
    """(cos, sin) of angle p·θ^(-2i/head_dim) for positions p and pairs i: [1, L, 1, hd/2, 2].

    Computed in float32 as the reference's ``precompute_freqs_cis`` (same ops, same values).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # [L, hd/2]
    return torch.stack([angles.cos(), angles.sin()], dim=-1)[None, :, None]  # [1, L, 1, hd/2, 2]


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (2i, 2i+1) of ``x`` [B, L, H, hd] by the table's angles.

    The interleaved ("complex-like") layout, (a, b) -> (a·cos − b·sin, b·cos + a·sin), in
    float32, cast back to ``x``'s dtype [models.py ``apply_rotary_emb_complex_like``].
    """
    pairs = x.unflatten(-1, (-1, 2)).float()  # [B, L, H, hd/2, 2]
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = table[..., 0], table[..., 1]  # [1, L, 1, hd/2]
    rotated = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1)
    return rotated.flatten(3).type_as(x)  # [B, L, H, hd]


def qk_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / ‖x‖ + eps`` over the head channels: the reference adds eps *after* dividing
    (operator precedence in models.py; the JAX model divides by ‖x‖ + eps instead).

    ``torch.norm`` as the reference, so bf16 autocast treats it the same way (fp32 policy).
    """
    return x / torch.norm(x, dim=-1, keepdim=True) + eps


class Attention(nn.Module):
    """Causal multi-head self-attention with RoPE, QK-norm and a learned logit scale."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        if cfg.model_dim % cfg.num_heads:
            raise ValueError(f"model_dim {cfg.model_dim} is not divisible by {cfg.num_heads} heads")
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.model_dim // cfg.num_heads
        self.eps = cfg.qknorm_eps
        self.w_qkv = nn.Linear(cfg.model_dim, 3 * cfg.model_dim, bias=False)
        self.w_out = nn.Linear(cfg.model_dim, cfg.model_dim, bias=False)
        for chunk in self.w_qkv.weight.chunk(3, dim=0):  # q, k, v: three separate draws
            _normal(chunk, 0.02)
        _normal(self.w_out.weight, 0.02)
        # log2(L² − L): the scale of a softmax over L·(L−1) logits [models.py Attention].
        scale0 = math.log2(cfg.seq_len**2 - cfg.seq_len)
        self.attn_scale = nn.Parameter(torch.tensor(scale0, dtype=torch.float32))

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape  # [B, L, D]
        q, k, v = self.w_qkv(x).split(d, dim=2)  # 3 x [B, L, D]
        q = apply_rope(q.view(b, n, self.num_heads, self.head_dim), rope)  # [B, L, H, hd]
        k = apply_rope(k.view(b, n, self.num_heads, self.head_dim), rope)
        v = v.view(b, n, self.num_heads, self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, L, hd]
        q = qk_norm(q, self.eps) * self.attn_scale
        k = qk_norm(k, self.eps)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)  # [B, H, L, hd]
        return self.w_out(out.transpose(1, 2).contiguous().view(b, n, d))  # [B, L, D]


class MLP(nn.Module):
    """``fc2(GLU(fc1(x)))``: first half ⊙ sigmoid(second half), width rounded up to
    ``multiple_of`` [models.py MLP]."""

    def __init__(self, dim: int, hidden_dim: int, multiple_of: int) -> None:
        super().__init__()
        hidden_dim = multiple_of * ((hidden_dim + multiple_of - 1) // multiple_of)
        self.fc1 = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=False)
        _normal(self.fc1.weight, 0.02)
        _normal(self.fc2.weight, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.glu(self.fc1(x), dim=-1))  # [B, L, D] -> [B, L, 2F] -> [B, L, F] -> D


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg)
        self.attn_norm = nn.RMSNorm(cfg.model_dim, eps=cfg.rmsnorm_eps)
        self.mlp = MLP(cfg.model_dim, cfg.mlp_dim, cfg.multiple_of)
        self.mlp_norm = nn.RMSNorm(cfg.model_dim, eps=cfg.rmsnorm_eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    """Token ids [B, L] (L ≤ ``seq_len``) -> next-token logits [B, L, vocab]."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.out_norm = nn.RMSNorm(cfg.model_dim, eps=cfg.rmsnorm_eps)
        self.lm_head = nn.Linear(cfg.model_dim, cfg.vocab_size, bias=False)
        head_dim = cfg.model_dim // cfg.num_heads
        self.register_buffer(
            "freqs_cis", rope_table(head_dim, cfg.seq_len, cfg.rope_theta), persistent=False
        )
        self.reset_parameters()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def reset_parameters(self) -> None:
        """The reference's ``_init_weights`` over ``Module.apply`` order, then the residual
        rescaling. A second call (re-init, not re-seeded) leaves RMSNorm weights and
        ``attn_scale`` as they are, as the reference's ``init_model_fn`` does."""
        self.apply(_normal_init)
        std = 0.02 / math.sqrt(2 * self.cfg.num_layers)
        for name, p in self.named_parameters():
            if name.endswith(("fc2.weight", "w_out.weight")):
                _normal(p, std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.freqs_cis.shape[1]:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds the model's seq_len {self.cfg.seq_len}"
            )
        x = self.embed_tokens(tokens)  # [B, L, D]
        rope = self.freqs_cis[:, : tokens.shape[1]]  # [1, L, 1, hd/2, 2]
        for layer in self.layers:
            x = layer(x, rope)
        return self.lm_head(self.out_norm(x))  # [B, L, V]


def _normal_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        _normal(module.weight, 0.02)


def _normal(t: torch.Tensor, std: float) -> None:
    """N(0, std²) in place; on the meta device (parameter counts) there is nothing to draw, and
    ``normal_`` there would go through a slow decomposition."""
    if not t.is_meta:
        nn.init.normal_(t, mean=0.0, std=std)
