"""BLEU: sacreBLEU's statistics + the 1.3.1 formula (the reference's in-repo port).

Checked outside the repo against the reference's ``bleu.py`` on 3,000 random corpora (identical
floats). Here: equal to sacreBLEU 2.x wherever some n-gram matches, the 1.3.1 smoothing where
none does, and hand-computed cases.

    python -m pytest tests/test_wmt_bleu.py
"""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu

from algoperf_torch.workloads.wmt.bleu import bleu_from_stats, corpus_bleu, corpus_stats

WORDS = ["the", "cat", "Haus", "a.", "1,000", "5-3", "(", ")", "&quot;", "über", ".", ",", "-"]
WORDS += ["$", "2014.", "&lt;b&gt;", "a,b", "\u201e", "ß", "'s"]


def random_corpus(rng: random.Random) -> tuple[list[str], list[str]]:
    def line() -> str:
        n = rng.choice([0, 0, 1, 1, 2, 3, 5, 8, 15])
        return " ".join(rng.choice(WORDS) for _ in range(n)) + rng.choice(["", " ", "\n", " ."])

    n = rng.choice([1, 2, 3, 10, 40])
    hyp, ref = [line() for _ in range(n)], [line() for _ in range(n)]
    if rng.random() < 0.5:
        ref = [h if rng.random() < 0.5 else r for h, r in zip(hyp, ref)]
    return hyp, ref


def test_equals_sacrebleu_where_some_ngram_matches():
    rng = random.Random(0)
    compared = 0
    for _ in range(150):
        hyp, ref = random_corpus(rng)
        stats = corpus_stats(hyp, ref)
        if stats[2:6].sum() == 0:
            continue  # sacreBLEU >= 2 returns 0 here; 1.3.1 smooths (next test)
        assert corpus_bleu(hyp, ref) == sacrebleu.corpus_bleu(hyp, [ref]).score
        compared += 1
    assert compared > 40


def test_no_match_is_smoothed_as_1_3_1():
    # 3 tokens, 0 matches: no 4-gram at all, so log 0 floors the score to 0.
    stats = corpus_stats(["a b c"], ["x y z"])
    assert stats.tolist() == [3, 3, 0, 0, 0, 0, 3, 2, 1, 0]
    assert bleu_from_stats(stats) == pytest.approx(0.0, abs=1e-300)  # log(0) floors the mean
    # 4 tokens, 0 matches: precisions 100/(2·4), 100/(4·3), 100/(8·2), 100/(16·1).
    stats = corpus_stats(["a b c d"], ["x y z w"])
    want = math.exp(sum(math.log(p) for p in (100 / 8, 100 / 12, 100 / 16, 100 / 16)) / 4)
    assert bleu_from_stats(stats) == pytest.approx(want, rel=1e-12)
    assert sacrebleu.corpus_bleu(["a b c d"], [["x y z w"]]).score == 0.0  # what differs


def test_hand_computed_brevity_penalty_and_empty_lines():
    # hyp "the cat" vs ref "the cat sat": p1 = 2/2, p2 = 1/1, p3, p4 no n-grams -> log 0.
    assert corpus_bleu(["the cat"], ["the cat sat"]) == 0.0
    hyp, ref = ["the cat sat on the mat"], ["the cat sat on the mat today"]
    bp = math.exp(1 - 7 / 6)
    assert corpus_bleu(hyp, ref) == pytest.approx(100 * bp, rel=1e-12)
    assert corpus_bleu([""], [""]) == 0.0
    assert corpus_bleu([], []) == 0.0
    assert corpus_stats(["", "a"], ["b", ""]).tolist()[:2] == [1, 1]
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_stats(["a", "b"], ["a"])


def test_stats_add_up_across_shards():
    rng = random.Random(1)
    hyp, ref = random_corpus(rng)
    while len(hyp) < 10:
        hyp, ref = random_corpus(rng)
    whole = corpus_stats(hyp, ref)
    halves = corpus_stats(hyp[:5], ref[:5]) + corpus_stats(hyp[5:], ref[5:])
    assert whole.tolist() == halves.tolist()
