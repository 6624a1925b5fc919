"""Two gloo ranks: ogbg eval shards cover each graph once and the summed metric state gives the
single-process metrics; train batches are the single stream's, alternating between ranks.

    python -m pytest tests/test_ogbg_ddp.py -m slow
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from ogbg_ddp_harness import Config, evaluate
from ogbg_fixtures import tiny_dataset

from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.distributed import DistInfo
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.ogbg import data


@pytest.mark.slow
def test_two_gloo_ranks_evaluate_each_graph_once(tmp_path):
    archives, _, _ = tiny_dataset(tmp_path)
    data_dir = str(tmp_path / "data")
    assert (
        data_main(
            ["ogbg", "--data-dir", data_dir, "--archives-dir", str(archives), "--allow-partial"]
        )
        == 0
    )
    out = tmp_path / "result.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, os.path.join(REPO, "tests", "ogbg_ddp_harness.py"), data_dir, str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads(open(f"{out}.{r}").read()) for r in range(2)]
    single = evaluate(DistInfo(), data_dir)
    for split in ("eval_train", "validation", "test"):
        graphs = ranks[0][split]["graphs"] + ranks[1][split]["graphs"]
        assert sorted(graphs) == list(range(len(single[split]["graphs"]))), split
        assert not set(ranks[0][split]["graphs"]) & set(ranks[1][split]["graphs"])
        for r in range(2):
            got, want = ranks[r][split]["metrics"], single[split]["metrics"]
            assert got["mean_average_precision"] == want["mean_average_precision"], split
            for key in ("accuracy", "loss"):  # float64 sums in another order
                assert got[key] == pytest.approx(want[key], rel=1e-12), (split, key)
    it = data.input_iterator(Config, DataRequest("train", data_dir, 2, 5))
    stream = [next(it)["inputs"].nodes.sum().item() for _ in range(8)]
    assert ranks[0]["train_nodes"] == stream[0::2] and ranks[1]["train_nodes"] == stream[1::2]
