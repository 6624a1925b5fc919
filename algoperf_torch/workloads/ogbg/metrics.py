"""OGBG loss and eval metrics: masked sigmoid BCE, accuracy, and a vectorised mean average precision.

The loss is the reference's [algoperf/workloads/ogbg/ogbg_pytorch/workload.py
``_binary_cross_entropy_with_mask``]; the metrics are its ``EvalMetrics`` [ogbg/metrics.py]
(WORKLOADS.md §8.3). The mAP is sklearn's ``average_precision_score`` per task, hand-written in
torch because the reference's per-task loop takes about a minute per eval; tests check it against
sklearn on data with ties, missing labels and empty tasks.

    python -m pytest tests/test_ogbg_metrics.py
"""

from __future__ import annotations

import math

import torch

from algoperf_torch.spec import Batch, LossOutput, WorkloadConfig


def sigmoid_bce_with_mask(
    labels: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Per-(graph, task) BCE in TF's stable form; 0 where ``mask`` is False.

    Labels at masked entries become -1 before smoothing (the reference's guard against NaNs in
    the gradient), smoothing is ``y (1 - ls) + ls / num_tasks``.
    """
    if not (logits.shape == labels.shape == mask.shape):
        raise ValueError(
            f"shape mismatch between logits ({tuple(logits.shape)}), targets "
            f"({tuple(labels.shape)}) and weights ({tuple(mask.shape)})"
        )
    if logits.dim() != 2:
        raise ValueError(f"logits must be [graphs, tasks]; got shape {tuple(logits.shape)}")
    mask = mask.to(torch.bool)
    labels = torch.where(mask, labels, -1)
    smoothed = (1.0 - label_smoothing) * labels + label_smoothing / labels.shape[-1]
    positive = logits >= 0
    relu_logits = torch.where(positive, logits, 0)
    abs_logits = torch.where(positive, logits, -logits)
    losses = relu_logits - logits * smoothed + torch.log(1 + torch.exp(-abs_logits))
    return torch.where(mask, losses, 0.0)


def loss(
    config: WorkloadConfig,
    label_batch: torch.Tensor,
    logits_batch: torch.Tensor,
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """``summed`` over valid entries, ``n_valid_examples`` = number of valid (graph, task) labels.

    ``mask_batch=None`` counts every entry as valid (the reference's code would fail on it).
    """
    if mask_batch is None:
        mask_batch = torch.ones_like(label_batch, dtype=torch.bool)
    per_example = sigmoid_bce_with_mask(label_batch, logits_batch, mask_batch, label_smoothing)
    return LossOutput(per_example.sum(), mask_batch.sum(), per_example)


def average_precisions(
    scores: torch.Tensor, positive: torch.Tensor, labelled: torch.Tensor
) -> torch.Tensor:
    """sklearn's ``average_precision_score`` of every column over its labelled rows, float64.

    AP = sum over distinct score thresholds t (descending) of (R(t) - R(t_prev)) * P(t), i.e.
    every positive counts the precision at the end of its group of tied scores. Columns without a
    labelled positive give NaN (sklearn warns and returns 0 or NaN; the caller excludes them).

    Args:
        scores: [N, T] in [0, 1] (probabilities).
        positive: [N, T] bool, label == 1.
        labelled: [N, T] bool, the entry counts.
    """
    # One int32 sort key per entry: a probability in [0, 1] orders like its float32 bit pattern
    # (< 2**30), shifted left to hold the label in bit 0; unlabelled entries get -1 and sort last.
    # torch sorts int32 (stable) with a radix sort, about twice as fast as a float sort, and the
    # label travels with the key (no gather). Rows are tasks ([T, N]) for a contiguous sort.
    bits = (scores.float() + 0.0).contiguous().view(torch.int32)  # + 0.0 turns -0.0 into 0.0
    key = torch.where(labelled, bits * 2 + positive.to(torch.int32), -1).T.contiguous()
    key = torch.sort(key, dim=1, descending=True, stable=True).values
    # Positives at or above each rank. The trailing unlabelled entries (-1 & 1 = 1) count too,
    # but they are never group ends, so nothing below reads them.
    tp = (key & 1).cumsum(1, dtype=torch.int32)
    value = key >> 1  # the score's bits; -1 for unlabelled
    # Last entry of each group of tied scores: where sklearn puts a threshold.
    group_end = torch.ones_like(key, dtype=torch.bool)
    group_end[:, :-1] = value[:, :-1] != value[:, 1:]
    group_end &= key >= 0
    # tp at the previous group end (tp never decreases, so a running max finds it).
    tp_ends = torch.where(group_end, tp, 0)
    prev_tp = torch.cat([torch.zeros_like(tp[:, :1]), tp_ends[:, :-1]], dim=1).cummax(1).values
    # Each group end adds (its new positives) x (precision there); only the few ends holding a
    # positive contribute, so the float64 arithmetic runs on those entries alone.
    gain = torch.where(group_end, tp - prev_tp, 0)
    task, index = gain.nonzero(as_tuple=True)
    new_pos = gain[task, index].double()
    precision = tp[task, index].double() / (index + 1)  # labelled entries come first: rank = i + 1
    ap = torch.zeros(key.shape[0], dtype=torch.float64, device=key.device)
    ap.index_add_(0, task, new_pos * precision)
    n_pos = torch.zeros_like(ap).index_add_(0, task, new_pos)
    return torch.where(n_pos > 0, ap / n_pos.clamp(min=1.0), math.nan)


def mean_average_precision(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, extra_zero_rows: int = 0
) -> float:
    """The reference's ``MeanAveragePrecision.compute`` [ogbg/metrics.py]: nanmean of the per-task
    AP over labelled rows, for the tasks whose *unmasked* column holds at least one 0 and one 1.

    ``extra_zero_rows`` are rows the reference holds but we do not (padding graphs: label 0 in
    every task, mask 0); they only count towards the "has a 0" half of the inclusion test.
    """
    probs = torch.sigmoid(logits.float())
    has_zero = ((labels == 0).sum(0) + extra_zero_rows) > 0
    has_one = (labels == 1).sum(0) > 0
    ap = average_precisions(probs, labels == 1, mask.to(torch.bool))
    ap = torch.where(has_zero & has_one, ap, math.nan)
    if torch.isnan(ap).all():
        return math.nan
    return float(ap.nanmean())


class OgbgMetrics:
    """One eval split's ``accuracy``, ``loss`` and ``mean_average_precision`` (the reference's
    ``EvalMetrics``), with a state that ``all_reduce_sum`` can merge.

    The mAP needs every graph's logits, so the state holds full-size buffers indexed by each
    graph's position in the split (``batch["graph_index"]``, -1 for padding graphs): ranks fill
    disjoint rows and leave the others 0, so the sum over ranks is the union. Batches without
    ``graph_index`` (synthetic data) fill rows in arrival order.

    Args:
        capacity: rows to hold (the largest eval split).
    """

    def __init__(self, capacity: int, num_tasks: int = 128) -> None:
        self.capacity = capacity
        self._logits = torch.zeros(capacity, num_tasks)
        self._code = torch.zeros(capacity, num_tasks, dtype=torch.int8)  # 1 neg, 2 pos, 0 none
        self._seen = torch.zeros(capacity, dtype=torch.int8)
        self._scalars = torch.zeros(4, dtype=torch.float64)  # loss, correct, valid, padding graphs
        self._next_row = 0

    def update(self, logits: torch.Tensor, batch: Batch) -> None:
        labels = batch["targets"].float().cpu()
        mask = batch["weights"].to(torch.bool).cpu()
        logits = logits.detach().float().cpu()
        index = batch.get("graph_index")
        if index is None:  # synthetic batches: every graph of the batch is real
            index = torch.arange(self._next_row, self._next_row + len(labels))
            self._next_row += len(labels)
        index = index.cpu()
        real = index >= 0
        if real.any() and int(index.max()) >= self.capacity:
            raise ValueError(
                f"graph_index {int(index.max())} exceeds the metric's {self.capacity} rows"
            )
        per_entry = sigmoid_bce_with_mask(labels, logits, mask)
        correct = ((logits > 0) == labels) & mask
        self._scalars += torch.tensor(
            [
                per_entry.double().sum().item(),
                correct.sum().item(),
                mask.sum().item(),
                (~real).sum().item(),
            ],
            dtype=torch.float64,
        )
        rows = index[real]
        self._logits[rows] = logits[real]
        self._code[rows] = (mask[real] * (1 + (labels[real] == 1))).to(torch.int8)
        self._seen[rows] = 1

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "logits": self._logits,
            "code": self._code,
            "seen": self._seen,
            "scalars": self._scalars,
        }

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]:
        """The reference divides by the masked-in entry count, not by ``num_examples``."""
        loss_sum, correct, valid, padding = state["scalars"].tolist()
        seen = state["seen"] > 0  # rows of graphs some rank evaluated
        code = state["code"][seen].round().to(torch.int64)
        positive, labelled = code == 2, code > 0
        # Label-0 entries (negatives and missing labels) of the graphs seen, plus the padding
        # graphs' rows, as in the reference's unmasked label column.
        zeros = (code != 2).sum(0) + padding
        probs = torch.sigmoid(state["logits"][seen].float())
        ap = average_precisions(probs, positive, labelled)
        ap = torch.where((zeros > 0) & positive.any(0), ap, math.nan)
        mean_ap = math.nan if torch.isnan(ap).all() else float(ap.nanmean())
        return {
            "accuracy": correct / valid if valid else math.nan,
            "loss": loss_sum / valid if valid else math.nan,
            "mean_average_precision": mean_ap,
        }


def make_metric(config: WorkloadConfig) -> OgbgMetrics:
    sizes = [config.num_eval_train_examples, config.num_validation_examples]
    sizes.append(config.num_test_examples or 0)
    return OgbgMetrics(max(sizes), int(config.model["num_outputs"]))
