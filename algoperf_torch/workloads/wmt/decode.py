"""Beam search for the WMT Transformer, batched over sentences and beams, with a KV cache.

Follows [algoperf/workloads/wmt/wmt_pytorch/decode.py ``beam_search``] and
[wmt_pytorch/workload.py ``predict_step``] (WORKLOADS.md §9.3): beam 4, alpha 0.6, EOS 2, a
256-slot sequence buffer starting with token 0 (at most 255 generated tokens); per step the top
2·beam candidates over beam×vocab; EOS-ended ones (-1e7 added) leave the live pool, are scored
log-prob / ((5 + L)/6)^alpha and merged into a finished pool of the best ``beam``; the loop stops
early once every finished slot of every sentence is filled and its worst score beats the best live
log-prob / ((5 + max_len)/6)^alpha. A sentence with no finished sequence returns its live beams.
Pools are kept in increasing score order (top-k then flip), so the best is the last beam.

Speed: each decoder layer keeps its self-attention keys/values of the tokens decoded so far (the
query attends to that prefix, not to the 256 slots under a mask as the reference does; the masked
slots add exact zeros), and the cross-attention keys/values of the encoder output are projected
once per sentence instead of once per step; source padding past the batch's longest sentence is
dropped (it only ever adds exact zeros). ``use_cache=False`` recomputes the whole prefix each
step instead (for timing and tests).

    python -m pytest tests/test_wmt_decode.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from algoperf_torch.workloads.wmt.model import Transformer, additive_mask, decoder_masks

EOS_ID = 2
NEG_INF = -1.0e7  # the reference's "minus infinity" for dead beams


def length_penalty(alpha: float, length: int) -> torch.Tensor:
    """((5 + length) / 6) ** alpha, in float32 as the reference computes it."""
    return torch.pow((5.0 + torch.tensor(length)) / 6.0, alpha)


class CachedDecoder:
    """One decoder step at a time for ``batch`` rows; keys/values kept per layer."""

    def __init__(self, model: Transformer, memory: torch.Tensor, src: torch.Tensor, max_len: int):
        self.model, self.max_len = model, max_len
        layers = model.decoder.decoder.layers
        self.cross_kv = [layer.multihead_attn.project_kv(memory) for layer in layers]
        # Cross-attention mask: every query may see the non-pad source tokens. [N, 1, 1, S]
        self.cross_mask = additive_mask((src > 0).unsqueeze(-2))
        n, h, hd = memory.size(0), model.cfg.nhead, model.cfg.d_model // model.cfg.nhead
        shape = (n, h, max_len, hd)
        self.keys = [memory.new_zeros(shape) for _ in layers]
        self.values = [memory.new_zeros(shape) for _ in layers]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (the surviving beams' parents) of every self-attention cache."""
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]

    def step(self, ids: torch.Tensor, t: int) -> torch.Tensor:
        """ids [N] at position ``t`` -> next-token logits [N, vocab]."""
        model = self.model
        x = model.shared_embedding(ids.unsqueeze(1)) + model.pos_encoder.pe[0, t]  # [N, 1, d]
        for i, layer in enumerate(model.decoder.decoder.layers):

            def self_attention(h: torch.Tensor, i: int = i, layer=layer) -> torch.Tensor:
                sa = layer.self_attn
                q, k, v = sa.in_proj(h).split(sa.d_model, dim=2)
                self.keys[i][:, :, t : t + 1] = sa.heads(k)
                self.values[i][:, :, t : t + 1] = sa.heads(v)
                keys, values = self.keys[i][:, :, : t + 1], self.values[i][:, :, : t + 1]
                return sa.attend(q, keys, values, None, 0.0)

            x = layer(x, self_attention, self.cross_kv[i], self.cross_mask, 0.0)
        return model.logits(x)[:, 0]


class RecomputingDecoder:
    """The same steps without a cache: the whole prefix goes through the decoder every step."""

    def __init__(self, model: Transformer, memory: torch.Tensor, src: torch.Tensor, max_len: int):
        self.model, self.memory, self.src = model, memory, src
        layers = model.decoder.decoder.layers
        self.cross_kv = [layer.multihead_attn.project_kv(memory) for layer in layers]
        self.prefix = None  # [N, t] ids fed so far

    def reorder(self, index: torch.Tensor) -> None:
        self.prefix = self.prefix.index_select(0, index)

    def step(self, ids: torch.Tensor, t: int) -> torch.Tensor:
        model = self.model
        prev = (
            ids.unsqueeze(1) if self.prefix is None else torch.cat([self.prefix, ids[:, None]], 1)
        )
        self.prefix = prev
        # Decoding masks only by causality and the source padding (not the generated ids).
        self_mask, _ = decoder_masks(torch.ones_like(prev), self.src, None, None)
        cross_mask = additive_mask((self.src > 0).unsqueeze(-2))
        x = model.pos_encoder(model.shared_embedding(prev), None, 0.0)
        for i, layer in enumerate(model.decoder.decoder.layers):
            sa = layer.self_attn
            x = layer(
                x, lambda h, sa=sa: sa(h, None, self_mask, 0.0), self.cross_kv[i], cross_mask, 0.0
            )
        return model.logits(x[:, -1:])[:, 0]


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, K, ...], index [B, K'] -> [B, K', ...]: per-sentence beam selection."""
    rows = torch.arange(x.size(0), device=x.device).unsqueeze(1)
    return x[rows, index]


@torch.no_grad()
def beam_search(
    model: Transformer,
    inputs: torch.Tensor,
    beam_size: int = 4,
    alpha: float = 0.6,
    eos_id: int = EOS_ID,
    max_decode_len: int = 256,
    use_cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search on source ids ``inputs`` [B, S].

    Returns:
        sequences [B, beam, max_decode_len] (slot 0 is the start token 0) in increasing score
        order, and their scores [B, beam] (log-prob / length penalty, or live log-probs for a
        sentence with no finished sequence).
    """
    model.eval()
    # Source padding beyond the longest sentence is masked out everywhere (its -1e10 scores give
    # exact zeros), so it is dropped: 256-slot rows cost what their real length costs.
    nonpad = (inputs != 0).any(dim=0).nonzero()
    inputs = inputs[:, : int(nonpad[-1]) + 1 if len(nonpad) else 1]
    bsz, k = inputs.size(0), beam_size
    src = inputs.repeat_interleave(k, dim=0)  # [B*K, S]
    memory = model.encode(inputs).repeat_interleave(k, dim=0)
    decoder = (CachedDecoder if use_cache else RecomputingDecoder)(
        model, memory, src, max_decode_len
    )
    dev = inputs.device
    neg = torch.tensor(NEG_INF, device=dev)
    live_logp = torch.tensor([0.0] + [NEG_INF] * (k - 1), device=dev).repeat(bsz, 1)
    live_seqs = torch.zeros(bsz, k, max_decode_len, dtype=torch.long, device=dev)
    fin_scores = torch.full((bsz, k), NEG_INF, device=dev)
    fin_seqs = torch.zeros_like(live_seqs)
    fin_flags = torch.zeros(bsz, k, dtype=torch.bool, device=dev)
    max_penalty = length_penalty(alpha, max_decode_len).to(dev)
    offsets = torch.arange(bsz, device=dev).unsqueeze(1) * k

    for cur in range(max_decode_len - 1):
        # Early stop: every finished slot filled and better than any live beam can become.
        worst_fin = fin_scores.min(dim=1, keepdim=True).values
        worst_fin = torch.where(fin_flags, worst_fin, neg)
        if bool(torch.all(worst_fin > live_logp[:, -1:] / max_penalty)):
            break
        logits = decoder.step(live_seqs[:, :, cur].reshape(-1), cur)  # [B*K, V]
        vocab = logits.size(-1)
        logp = F.log_softmax(logits, dim=-1).view(bsz, k, vocab) + live_logp.unsqueeze(2)
        top_logp, top_idx = torch.topk(logp.view(bsz, k * vocab), k=2 * k)
        top_beam = torch.div(top_idx, vocab, rounding_mode="floor")
        top_seqs = _gather(live_seqs, top_beam)  # [B, 2K, T]
        top_seqs[:, :, cur + 1 :] = (top_idx % vocab).unsqueeze(2)
        finished = top_seqs[:, :, cur + 1] == eos_id
        # Live pool: the best K candidates that did not just end.
        alive_logp = top_logp + finished * neg
        alive = torch.flip(torch.topk(alive_logp, k=k).indices, (1,))
        live_seqs, live_logp = _gather(top_seqs, alive), _gather(alive_logp, alive)
        decoder.reorder((_gather(top_beam, alive) + offsets).reshape(-1))
        # Finished pool: the best K of the old pool and the candidates that just ended.
        scores = top_logp / length_penalty(alpha, cur + 1).to(dev)
        scores = scores + (~finished) * neg
        all_seqs = torch.cat([fin_seqs, top_seqs], dim=1)
        all_scores = torch.cat([fin_scores, scores], dim=1)
        all_flags = torch.cat([fin_flags, finished], dim=1)
        best = torch.flip(torch.topk(all_scores, k=k).indices, (1,))
        fin_seqs, fin_scores = _gather(all_seqs, best), _gather(all_scores, best)
        fin_flags = _gather(all_flags, best)

    any_finished = fin_flags.any(dim=1)
    seqs = torch.where(any_finished[:, None, None], fin_seqs, live_seqs)
    scores = torch.where(any_finished[:, None], fin_scores, live_logp)
    return seqs, scores


def translate(
    model: Transformer, inputs: torch.Tensor, max_decode_len: int = 256, **kwargs
) -> torch.Tensor:
    """The best beam of each sentence, without the start token: [B, max_decode_len - 1]."""
    seqs, _ = beam_search(model, inputs, max_decode_len=max_decode_len, **kwargs)
    return seqs[:, -1, 1:]
