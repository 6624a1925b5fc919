"""Beam search: exact on a tiny model/vocabulary, beam 1 against a plain loop, cache = no cache.

python -m pytest tests/test_wmt_decode.py
"""

from __future__ import annotations

import itertools

import torch

from algoperf_torch.workloads.wmt.decode import EOS_ID, beam_search, length_penalty, translate
from algoperf_torch.workloads.wmt.model import Transformer, TransformerConfig

VOCAB = 4
CFG = TransformerConfig(ntoken=VOCAB, d_model=16, nhead=2, d_hid=16, nlayers=2, max_len=8)


def tiny_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(CFG).eval()


def next_logp(model: Transformer, src: torch.Tensor, prefix: list[int]) -> torch.Tensor:
    """log p(. | prefix) from one teacher-forced pass (no cache, no beams)."""
    tgt = torch.tensor([prefix[1:] + [1]])  # forward shifts right: its inputs are ``prefix``
    with torch.no_grad():
        logits = model(src[None], tgt, dropout_rate=0.0)
    return logits[0, -1].log_softmax(-1)


def test_large_beam_is_exhaustive_search():
    """With every prefix kept alive, beam search returns the best EOS-ended sequence."""
    model, max_len = tiny_model(), 4  # up to 3 generated tokens
    src = torch.tensor([3, 1, 2, 0])
    best, best_score = None, -float("inf")
    for n in range(1, max_len):
        for body in itertools.product([t for t in range(VOCAB) if t != EOS_ID], repeat=n - 1):
            seq = [0, *body, EOS_ID]
            logp = sum(float(next_logp(model, src, seq[: i + 1])[seq[i + 1]]) for i in range(n))
            score = logp / float(length_penalty(0.6, n))
            if score > best_score:
                best, best_score = seq[1:], score
    seqs, scores = beam_search(model, src[None], beam_size=18, max_decode_len=max_len)
    got = seqs[0, -1, 1:].tolist()
    assert got[: len(best)] == best
    assert abs(float(scores[0, -1]) - best_score) < 1e-5 * max(1.0, abs(best_score))


def beam1_reference(model: Transformer, src: torch.Tensor, max_len: int) -> list[int]:
    """Beam 1 spelled out: the better of the top two continues, an EOS among them may finish."""
    live, live_logp, fin, fin_score = [0], 0.0, None, -1e7
    penalty_max = float(length_penalty(0.6, max_len))
    for cur in range(max_len - 1):
        if fin is not None and fin_score > live_logp / penalty_max:
            break
        logp = next_logp(model, src, live) + live_logp
        top = torch.topk(logp, 2)
        cands = [(float(v), int(i)) for v, i in zip(top.values, top.indices)]
        for v, i in cands:  # the best ending candidate competes with the finished one
            if i == EOS_ID and v / float(length_penalty(0.6, cur + 1)) > fin_score:
                fin, fin_score = live + [i], v / float(length_penalty(0.6, cur + 1))
        v, i = next((v, i) for v, i in cands if i != EOS_ID)
        live, live_logp = live + [i], v
    out = fin if fin is not None else live
    return out[1:]


def test_beam_one_matches_a_plain_loop():
    for seed in range(4):
        model = tiny_model(seed)
        src = torch.tensor([3, 3, 1, 2])
        want = beam1_reference(model, src, 7)
        got = translate(model, src[None], max_decode_len=7, beam_size=1)[0].tolist()
        assert got[: len(want)] == want, seed
        # After the sequence the reference's buffer repeats the last token.
        assert all(t == want[-1] for t in got[len(want) :])


def test_cache_equals_recomputation_batched():
    torch.manual_seed(1)
    cfg = TransformerConfig(ntoken=30, d_model=16, nhead=2, d_hid=16, nlayers=2, max_len=16)
    model = Transformer(cfg).eval()
    src = torch.randint(3, 30, (5, 9))
    src[1, 4:] = 0
    src[:, 8] = 0
    a_seqs, a_scores = beam_search(model, src, max_decode_len=16)
    b_seqs, b_scores = beam_search(model, src, max_decode_len=16, use_cache=False)
    assert torch.equal(a_seqs, b_seqs)
    torch.testing.assert_close(a_scores, b_scores, rtol=1e-5, atol=1e-5)
    # Each sentence is decoded as if alone (batching does not mix sentences).
    one, _ = beam_search(model, src[1:2], max_decode_len=16)
    assert torch.equal(one[0], a_seqs[1])
