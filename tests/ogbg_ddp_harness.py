"""Run under ``torchrun --nproc_per_node=2`` by tests/test_ogbg_ddp.py: each rank reads its ogbg
shards and evaluates a fixed fake model; the metric states are summed with gloo.

    torchrun --standalone --nproc_per_node=2 tests/ogbg_ddp_harness.py DATA_DIR OUT_JSON
"""

from __future__ import annotations

import json
import sys

import torch

from algoperf_torch.distributed import all_reduce_sum, setup_distributed, teardown_distributed
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.ogbg import data, metrics

SIZES = {"eval_train": 10, "validation": 6, "test": 6}


class Config:
    data = {"avg_nodes_per_graph": 26, "avg_edges_per_graph": 56}
    model = {"num_outputs": 128}
    num_eval_train_examples, num_validation_examples, num_test_examples = 10, 6, 6


def fake_logits(batch: dict) -> torch.Tensor:
    """Logits that depend only on the graph (its split position): exact across sharding."""
    index = batch["graph_index"].double()[:, None]
    return torch.sin(index * 1.7 + torch.arange(128) * 0.3).float() * 4


def evaluate(info, data_dir: str) -> dict:
    out = {}
    for split, n in SIZES.items():
        req = DataRequest(split, data_dir, 2, 0, info.rank, info.world_size, n)
        metric = metrics.make_metric(Config)
        seen = []
        for batch in data.input_iterator(Config, req):
            metric.update(fake_logits(batch), batch)
            seen += batch["graph_index"][batch["graph_index"] >= 0].tolist()
        state = all_reduce_sum(metric.state(), info)
        out[split] = {"metrics": metric.compute(state, n), "graphs": seen}
    return out


def main() -> None:
    data_dir, out_path = sys.argv[1], sys.argv[2]
    info = setup_distributed("cpu")
    result = evaluate(info, data_dir)
    req = DataRequest("train", data_dir, 2, 5, info.rank, info.world_size)
    it = data.input_iterator(Config, req)
    result["train_nodes"] = [next(it)["inputs"].nodes.sum().item() for _ in range(4)]
    with open(f"{out_path}.{info.rank}", "w") as f:
        json.dump(result, f)
    teardown_distributed(info)


if __name__ == "__main__":
    main()
