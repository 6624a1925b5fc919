"""LibriSpeech CTC loss, greedy decoding and WER, against hand counts and jiwer."""

from __future__ import annotations

import math
import random
import time

import pytest
import torch

from algoperf_torch.workloads.librispeech_conformer.metrics import (
    IdWords,
    SpeechMetrics,
    ctc_loss,
    greedy_decode,
    reference_word_errors,
    tf_string_repr,
    word_errors,
)


def one_hot_logits(frames: list[list[int]], vocab: int = 8) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(frames), vocab).float() * 10.0


def loop_decode(frames: list[int], paddings: list[float]) -> list[int]:
    """Best-path decoding written as a plain loop: pads -> blank, collapse, drop blanks."""
    tokens = [0 if p else t for t, p in zip(frames, paddings)]
    collapsed = [t for k, t in enumerate(tokens) if k == 0 or t != tokens[k - 1]]
    return [t for t in collapsed if t != 0]


def test_greedy_decode_collapses_repeats_before_dropping_blanks():
    frames = [[3, 3, 0, 3, 5, 5, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [7, 7, 7, 1, 1, 2, 2, 2]]
    paddings = torch.tensor([[0.0] * 8, [0.0] * 8, [0, 0, 0, 0, 0, 1, 1, 1.0]])
    ids, pads = greedy_decode(one_hot_logits(frames), paddings)
    assert ids.tolist() == [
        [3, 3, 5, 0, 0, 0, 0, 0],  # 3 3 | 0 | 3 -> two 3s (a blank separates them)
        [0] * 8,
        [7, 1, 0, 0, 0, 0, 0, 0],  # padded frames are blanks
    ]
    assert pads.tolist() == (ids == 0).tolist()


def test_greedy_decode_matches_a_loop_on_random_frames():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 40, 5, generator=gen)
    lengths = torch.randint(0, 41, (16,), generator=gen)
    paddings = (torch.arange(40)[None] >= lengths[:, None]).float()
    ids, _ = greedy_decode(logits, paddings)
    for b in range(16):
        want = loop_decode(logits[b].argmax(-1).tolist(), paddings[b].tolist())
        assert ids[b].tolist() == want + [0] * (40 - len(want))


def test_ctc_loss_by_hand_and_valid_counts():
    # Vocab 3 (0 = blank). Example 0: T=1, target [1]: the only path is "1".
    # Example 1: T=2, target [2]: paths "22", "02", "20".
    logits = torch.log(
        torch.tensor(
            [
                [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]],
                [[0.1, 0.3, 0.6], [0.4, 0.2, 0.4]],
            ]
        )
    )
    logit_paddings = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    target_paddings = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    out = ctc_loss(None, (targets, target_paddings), (logits, logit_paddings))
    p1 = 0.6 * 0.4 + 0.1 * 0.4 + 0.6 * 0.4
    expected = torch.tensor([-math.log(0.5), -math.log(p1)])
    torch.testing.assert_close(out.per_example, expected, rtol=1e-6, atol=1e-6)
    assert out.summed == pytest.approx(float(expected.sum()), rel=1e-6)
    assert float(out.n_valid_examples) == 2.0  # target tokens
    # With a mask: per-example losses masked, n_valid counts masked-in non-empty examples.
    targets2 = torch.tensor([[1.0, 2.0], [2.0, 0.0]])
    paddings2 = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    unmasked = ctc_loss(None, (targets2, paddings2), (logits, torch.zeros(2, 2)))
    assert float(unmasked.n_valid_examples) == 3.0
    masked = ctc_loss(
        None, (targets2, paddings2), (logits, torch.zeros(2, 2)), torch.tensor([1.0, 0.0])
    )
    assert float(masked.n_valid_examples) == 1.0 and float(masked.per_example[1]) == 0.0
    # No tokens at all: n_valid is floored at 1.
    empty = ctc_loss(None, (torch.zeros(2, 2), torch.ones(2, 2)), (logits, torch.zeros(2, 2)))
    assert float(empty.n_valid_examples) == 1.0


def test_tf_string_wrapper_and_quote_switch():
    assert tf_string_repr("HELLO WORLD") == "tf.Tensor(b'HELLO WORLD', shape=(), dtype=string)"
    assert tf_string_repr("DON'T") == 'tf.Tensor(b"DON\'T", shape=(), dtype=string)'
    assert tf_string_repr("") == "tf.Tensor(b'', shape=(), dtype=string)"


def test_hand_counted_word_errors():
    # True WER: CAT->BAT substituted, DOWN inserted: 2 errors over 3 words.
    assert word_errors("THE BAT SAT DOWN", "THE CAT SAT") == (2, 3)
    # Reference WER: "tf.Tensor(b'THE CAT SAT', shape=(), dtype=string)" is 5 words; the
    # hypothesis's last text word "DOWN'," carries the quote, so SAT', -> SAT, CAT -> BAT and
    # DOWN', inserted: 3 errors over 5 words.
    assert reference_word_errors("THE BAT SAT DOWN", "THE CAT SAT") == (3, 5)
    # Empty hypothesis: "tf.Tensor(b''," vs "tf.Tensor(b'A" and "B'," -> 1 sub + 1 del.
    assert reference_word_errors("", "A B") == (2, 4)
    assert word_errors("", "A B") == (2, 2)
    # An apostrophe in only one side switches its quotes: both wrapper words mismatch.
    assert reference_word_errors("DONT GO", "DON'T GO") == (2, 4)
    assert word_errors("DONT GO", "DON'T GO") == (1, 2)
    # Same apostrophe on both sides: identical strings, no errors.
    assert reference_word_errors("DON'T GO", "DON'T  GO") == (0, 4)
    # Perfect hypothesis.
    assert reference_word_errors("A B C", "A B C") == (0, 5)


def test_true_wer_equals_jiwer():
    jiwer = pytest.importorskip("jiwer")
    rng = random.Random(0)
    words = ["A", "B", "C", "DON'T", "E", "FOO"]
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in range(300)]
    hyps = [" ".join(rng.choices(words, k=rng.randint(0, 12))) for _ in range(300)]
    sums = SpeechMetrics.word_error_sums(hyps, refs)
    assert sums[2] / sums[3] == pytest.approx(jiwer.wer(refs, hyps), rel=1e-12)
    assert sums[0] / sums[1] != pytest.approx(sums[2] / sums[3])  # the quirk changes the number


def test_metric_sums_over_batches_with_decoding():
    # Vocab 8; IdWords reads ids >= 3 as words ("3", "4", ...), EOS (2) vanishes.
    metric = SpeechMetrics(IdWords())
    logits = one_hot_logits([[3, 0, 4, 4, 0, 0], [5, 5, 5, 5, 5, 5]])
    logit_paddings = torch.tensor([[0.0] * 6, [0, 0, 0, 0, 1, 1.0]])
    targets = torch.tensor([[3.0, 4.0, 2.0, 0.0], [6.0, 2.0, 0.0, 0.0]])
    target_paddings = torch.tensor([[0.0, 0, 0, 1], [0, 0, 1, 1.0]])
    batch = {"targets": (targets, target_paddings)}
    metric.update((logits, logit_paddings), batch)
    metric.update((logits, logit_paddings), batch)
    out = metric.compute(metric.state(), num_examples=4)
    # Utterance 0 "3 4" vs "3 4": 0 errors; utterance 1 "5" vs "6": 1 error; twice.
    assert out["wer_true"] == pytest.approx(2 / 6)
    assert out["wer"] == pytest.approx(2 / (2 * (4 + 3)))  # wrapped: 4 + 3 words
    loss = ctc_loss(None, (targets, target_paddings), (logits, logit_paddings))
    assert out["ctc_loss"] == pytest.approx(float(loss.summed) / 5, rel=1e-6)


def test_a_full_eval_of_words_takes_seconds_not_minutes():
    # 5,348 + 2,472 + 5,376 utterances of ~35 words: the reference's Python DP takes minutes.
    rng = random.Random(1)
    vocab = [f"W{i}" for i in range(2000)]
    refs = [" ".join(rng.choices(vocab, k=35)) for _ in range(13_196)]
    hyps = [" ".join(w if rng.random() < 0.9 else "X" for w in r.split()) for r in refs]
    start = time.perf_counter()
    SpeechMetrics.word_error_sums(hyps, refs)
    assert time.perf_counter() - start < 15.0
