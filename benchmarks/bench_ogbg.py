"""ogbg: the vectorised mAP against sklearn's per-task loop, and the batch loader's graphs/s.

mAP: one full eval split (43,793 graphs x 128 tasks) with molpcba-like labels (most entries
missing, about 1.4% of the labelled ones positive), ours (``metrics.mean_average_precision``)
against the reference's loop over tasks with sklearn's ``average_precision_score``; both on the
same probabilities, medians of ``--repeats``. Loader: ``TrainGraphBatches`` packing and padding
batches of ``--batch-size`` graphs from in-memory arrays of molpcba's size statistics.

    python benchmarks/bench_ogbg.py [--repeats 3] [--threads 1] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def reference_map(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    aps = np.full(labels.shape[1], np.nan)
    for t in range(labels.shape[1]):
        if np.sum(labels[:, t] == 0) > 0 and np.sum(labels[:, t] == 1) > 0:
            m = mask[:, t]
            aps[t] = average_precision_score(labels[m, t], probs[m, t])
    return float(np.nanmean(aps))


def bench_map(repeats: int) -> None:
    from algoperf_torch.workloads.ogbg.metrics import mean_average_precision

    rng = np.random.default_rng(0)
    n, tasks = 43_793, 128
    mask = rng.random((n, tasks)) < 0.6
    labels = ((rng.random((n, tasks)) < 0.014) & mask).astype(np.float32)
    logits = (rng.normal(size=(n, tasks)) * 2 + 2 * labels - 4).astype(np.float32)
    probs = torch.sigmoid(torch.from_numpy(logits))
    t_logits, t_labels, t_mask = map(torch.from_numpy, (logits, labels, mask))
    ours, ref = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a = mean_average_precision(t_logits, t_labels, t_mask)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        b = reference_map(labels, probs.numpy(), mask)
        ref.append(time.perf_counter() - start)
    o, r = statistics.median(ours), statistics.median(ref)
    print(f"mAP of {n} x {tasks}: ours {o:.3f} s, sklearn loop {r:.3f} s ({r / o:.1f}x); ", end="")
    print(f"values {a:.12f} vs {b:.12f} (|diff| {abs(a - b):.1e})")


def bench_loader(batch_size: int, batches: int) -> None:
    from algoperf_torch.spec import DataRequest
    from algoperf_torch.workloads.ogbg import data

    rng = np.random.default_rng(0)
    graphs = 50_000
    num_nodes = np.clip(rng.normal(26, 6, graphs), 2, 100).astype(np.int32)
    num_edges = np.clip((num_nodes * 1.08 + rng.normal(0, 2, graphs)), 0, None).astype(np.int32)
    total_nodes, total_bonds = int(num_nodes.sum()), int(num_edges.sum())
    graph_of_bond = np.repeat(np.arange(graphs), num_edges)
    mol = data.Molecules(
        num_nodes=num_nodes,
        num_edges=num_edges,
        node_feat=rng.integers(0, 100, (total_nodes, 9), dtype=np.uint8),
        edge_feat=rng.integers(0, 5, (total_bonds, 3), dtype=np.uint8),
        edge_index=(rng.random((total_bonds, 2)) * num_nodes[graph_of_bond, None]).astype(np.int16),
        labels=rng.choice(np.array([-1, 0, 1], np.int8), (graphs, 128), p=[0.4, 0.59, 0.01]),
    )
    config = {"avg_nodes_per_graph": 26, "avg_edges_per_graph": 56}
    request = DataRequest("train", "", batch_size, 0)
    it = data.TrainGraphBatches(mol, np.arange(graphs), request, data.budgets(batch_size, config))
    next(it)
    start = time.perf_counter()
    real = 0
    for _ in range(batches):
        real += int(data.graph_padding_mask(next(it)["inputs"].n_node.numpy()).sum())
    seconds = time.perf_counter() - start
    print(
        f"loader b={batch_size}: {batches / seconds:.1f} batches/s, {real / seconds:,.0f} graphs/s "
        f"({real / batches:.0f} real graphs per padded batch of {batch_size})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--batches", type=int, default=50)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench_map(args.repeats)
    bench_loader(args.batch_size, args.batches)


if __name__ == "__main__":
    main()
