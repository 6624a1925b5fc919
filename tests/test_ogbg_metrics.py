"""OGBG loss and metrics against hand formulas and sklearn (ties, missing labels, empty tasks).

python -m pytest tests/test_ogbg_metrics.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from algoperf_torch.workloads.ogbg.metrics import (
    OgbgMetrics,
    average_precisions,
    loss,
    mean_average_precision,
)


def reference_map(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> float:
    """The reference's loop [ogbg/metrics.py ``MeanAveragePrecision.compute``] on given probs."""
    aps = np.full(labels.shape[1], np.nan)
    for t in range(labels.shape[1]):
        if np.sum(labels[:, t] == 0) > 0 and np.sum(labels[:, t] == 1) > 0:
            m = mask[:, t]
            aps[t] = average_precision_score(labels[m, t], probs[m, t])
    return np.nan if np.isnan(aps).all() else float(np.nanmean(aps))


def random_case(rng, n, tasks, decimals):
    """Logits rounded to create ties; ~30% missing labels; an empty and an all-missing task."""
    logits = np.round(rng.normal(size=(n, tasks)) * 3, decimals).astype(np.float32)
    mask = rng.random((n, tasks)) < 0.7
    labels = ((rng.random((n, tasks)) < rng.uniform(0.05, 0.5)) & mask).astype(np.float32)
    labels[:, 0] = 0  # a task without positives: excluded
    mask[:, 1] = False  # a task without labels: excluded
    labels[:, 1] = 0
    return logits, labels, mask


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    logits, labels, mask = random_case(rng, int(rng.integers(5, 400)), 7, seed % 3)
    probs = torch.sigmoid(torch.from_numpy(logits))
    ours = average_precisions(probs, torch.from_numpy(labels) == 1, torch.from_numpy(mask))
    for t in range(labels.shape[1]):
        m = mask[:, t]
        if labels[m, t].sum() == 0:
            assert math.isnan(ours[t]), t
            continue
        expected = average_precision_score(labels[m, t], probs.numpy()[m, t])
        # Both sum the same few float64 terms; 1e-12 covers any summation order.
        assert ours[t].item() == pytest.approx(expected, rel=1e-12, abs=1e-12), t


def test_average_precision_hand_computed():
    # Scores 0.9 (+), 0.5 (-), 0.5 (+), 0.1 (-); the tie is one threshold: AP = 1/2 (1 + 2/3).
    scores = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    positive = torch.tensor([[True], [False], [True], [False]])
    ap = average_precisions(scores, positive, torch.ones_like(positive))
    assert ap.item() == pytest.approx(0.5 * (1 + 2 / 3), rel=1e-15)
    # All labelled entries positive: AP 1 (sklearn agrees).
    ap = average_precisions(scores, torch.ones_like(positive), torch.ones_like(positive))
    assert ap.item() == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_mean_average_precision_equals_the_reference_loop(seed):
    rng = np.random.default_rng(100 + seed)
    logits, labels, mask = random_case(rng, 300, 12, seed % 2)
    probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
    expected = reference_map(labels, probs, mask)
    got = mean_average_precision(
        torch.from_numpy(logits), torch.from_numpy(labels), torch.from_numpy(mask)
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_mean_average_precision_nan_when_no_task_qualifies():
    labels = torch.zeros(5, 3)
    assert math.isnan(mean_average_precision(torch.randn(5, 3), labels, labels > -1))


def test_inclusion_test_reads_the_unmasked_column():
    """A task whose labelled entries are all positive is included only because a missing (or
    padding) entry holds a 0 in the unmasked column, as in the reference."""
    logits = torch.tensor([[1.0], [2.0], [0.0]])
    labels = torch.tensor([[1.0], [1.0], [0.0]])
    mask = torch.tensor([[True], [True], [False]])
    assert mean_average_precision(logits, labels, mask) == 1.0
    assert math.isnan(mean_average_precision(logits[:2], labels[:2], mask[:2]))
    assert mean_average_precision(logits[:2], labels[:2], mask[:2], extra_zero_rows=1) == 1.0


def test_loss_matches_torch_bce_and_label_smoothing():
    torch.manual_seed(0)
    logits = torch.randn(6, 128) * 4
    labels = (torch.rand(6, 128) < 0.3).float()
    mask = torch.rand(6, 128) < 0.6
    out = loss(None, labels, logits, mask)
    expected = F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * mask
    torch.testing.assert_close(out.per_example, expected, rtol=1e-6, atol=1e-6)
    assert out.n_valid_examples == mask.sum() and out.summed == out.per_example.sum()
    ls = 0.2
    smoothed = labels * (1 - ls) + ls / 128
    out = loss(None, labels, logits, mask, label_smoothing=ls)
    expected = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none") * mask
    torch.testing.assert_close(out.per_example, expected, rtol=1e-6, atol=1e-6)
    # Masked entries give 0 loss and no gradient, even with NaN labels there.
    logits.requires_grad_(True)
    nan_labels = torch.where(mask, labels, torch.nan)
    out = loss(None, nan_labels, logits, mask)
    out.summed.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[~mask] == 0).all()
    with pytest.raises(ValueError, match="shape mismatch"):
        loss(None, labels[:2], logits, mask)


def _batch(labels, weights, index):
    return {"targets": labels, "weights": weights, "graph_index": index}


def test_metric_state_sums_over_ranks_to_the_single_process_result():
    torch.manual_seed(1)
    n, tasks = 40, 128
    logits = torch.randn(n + 2, tasks)
    labels = (torch.rand(n + 2, tasks) < 0.1).float()
    weights = torch.rand(n + 2, tasks) < 0.7
    labels[n:], weights[n:] = 0, False  # two padding graphs
    labels = labels * weights
    index = torch.cat([torch.arange(n), torch.tensor([-1, -1])])
    single = OgbgMetrics(capacity=64, num_tasks=tasks)
    single.update(logits[:25], _batch(labels[:25], weights[:25], index[:25]))
    single.update(logits[25:], _batch(labels[25:], weights[25:], index[25:]))
    # Two "ranks": rank 0 graphs 0..19 plus a padding graph, rank 1 the rest.
    ranks = [OgbgMetrics(64, tasks), OgbgMetrics(64, tasks)]
    rows0 = list(range(20)) + [n]
    rows1 = list(range(20, n)) + [n + 1]
    for m, rows in zip(ranks, (rows0, rows1)):
        m.update(logits[rows], _batch(labels[rows], weights[rows], index[rows]))
    summed = {
        k: ranks[0].state()[k].double() + ranks[1].state()[k].double() for k in single.state()
    }
    a = single.compute(single.state(), n)
    b = single.compute(summed, n)
    assert a == b
    mask = weights[:n]
    expected_map = mean_average_precision(logits[:n], labels[:n], mask, extra_zero_rows=2)
    assert a["mean_average_precision"] == pytest.approx(expected_map, rel=1e-12)
    correct = (((logits[:n] > 0) == labels[:n]) & mask).sum().item()
    assert a["accuracy"] == pytest.approx(correct / mask.sum().item(), rel=1e-12)
    bce = F.binary_cross_entropy_with_logits(logits[:n], labels[:n], reduction="none")
    assert a["loss"] == pytest.approx((bce * mask).sum().item() / mask.sum().item(), rel=1e-5)


def test_metric_without_graph_index_fills_rows_in_order():
    m = OgbgMetrics(capacity=8, num_tasks=2)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    m.update(torch.randn(3, 2), {"targets": labels, "weights": torch.ones(3, 2, dtype=torch.bool)})
    assert int(m.state()["seen"].sum()) == 3
    with pytest.raises(ValueError, match="exceeds"):
        m.update(torch.randn(1, 2), _batch(labels[:1], labels[:1] > -1, torch.tensor([9])))
