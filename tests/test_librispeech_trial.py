"""LibriSpeech end to end: evals on the prepared real-speech fixtures, and 3-step trials.

The trials run the full-size models on CPU (seconds per step on 2 cores), so they are ``slow``;
the eval test with an oracle "model" runs by default.
"""

from __future__ import annotations

import csv
import dataclasses
import math

import pytest
import torch
from conftest import run_trial
from test_librispeech_data import VOCAB, build_archives, run_setup, tiny_config

from algoperf_torch.distributed import DistInfo
from algoperf_torch.evaluation import evaluate_split
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions

SIZES = [
    "workload.num_train_examples=12",
    "workload.num_eval_train_examples=4",
    "workload.num_validation_examples=5",
    "workload.num_test_examples=3",
    "workload.eval_batch_size=2",
    f"workload.model.vocab_size={VOCAB}",  # the fixtures' tokenizer
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("librispeech_trial")
    build_archives(root / "archives")
    assert run_setup(root / "data", root / "archives", "--allow-partial") == 0
    return root / "data"


def oracle_forward(blank: bool):
    """A 'model' emitting each target id on its own frame, blanks between (or only blanks)."""

    def forward(model, batch, train, dropout_rate):
        ids, paddings = batch["targets"]
        b, length = ids.shape
        frames = torch.zeros(b, 2 * length, dtype=torch.long)
        if not blank:
            frames[:, ::2] = ids.long() * (paddings == 0)
        logits = torch.nn.functional.one_hot(frames, VOCAB).float() * 20.0
        return logits, torch.zeros(b, 2 * length)

    return forward


def test_wer_on_the_real_transcripts(data_dir):
    functions = get_workload_functions("librispeech_conformer")
    config = tiny_config()
    for blank, want_true in ((False, 0.0), (True, 1.0)):
        fns = dataclasses.replace(functions, forward=oracle_forward(blank))
        workload = Workload(config, fns, DistInfo(), data_dir=str(data_dir))
        out = evaluate_split(workload, torch.nn.Identity(), "validation", seed=0)
        assert out["wer_true"] == want_true  # every word right / every word deleted
        if not blank:
            assert out["wer"] == 0.0
        else:
            # dev: HELLO WORLD, THE CAT SAT ON THE MAT, DON'T GO THERE (dev-clean),
            # SHE SELLS SEA SHELLS, IT IS A FINE DAY (dev-other): 20 words. Wrapped, an
            # n-word reference is n + 2 words and an empty hypothesis 3; the 2 tails
            # ("shape=(),", "dtype=string)") match, so n errors: 20 over 20 + 2 * 5.
            assert out["wer"] == pytest.approx(20 / 30)
        assert math.isfinite(out["ctc_loss"])


def _evals(trial):
    return list(csv.DictReader(open(trial / "eval_measurements.csv")))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["librispeech_conformer", "librispeech_deepspeech"])
def test_three_steps_on_the_prepared_fixtures(tmp_path, data_dir, name):
    summary = run_trial(
        tmp_path,
        [
            f"workload={name}",
            f"data.data_dir={data_dir}",
            "data.num_workers=1",
            "max_steps=3",
            "batch_size=2",
            "device=cpu",
            *SIZES,
        ],
    )
    assert summary["global_step"] == 3
    rows = _evals(tmp_path / f"{name}_nadamw" / f"{name}_pytorch" / "trial_1")
    assert rows and rows[-1]["global_step"] == "3"
    for key in ("validation/wer", "validation/wer_true", "test/wer", "train/ctc_loss"):
        assert math.isfinite(float(rows[-1][key])), key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["librispeech_conformer", "librispeech_deepspeech"])
def test_three_steps_on_synthetic_data(tmp_path, name):
    summary = run_trial(
        tmp_path,
        [
            f"workload={name}",
            "data=synthetic",
            "max_steps=3",
            "batch_size=2",
            "data.synthetic_eval_examples=2",
            "workload.eval_batch_size=2",
            "device=cpu",
        ],
    )
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1


DDP_WORKER = """
import dataclasses, json, sys
import torch, torch.distributed as dist
from algoperf_torch.distributed import setup_distributed
from algoperf_torch.evaluation import evaluate_split
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config

def forward(model, batch, train, dropout_rate):  # the second target id dropped
    ids, paddings = batch["targets"]
    keep = (paddings == 0) & (torch.arange(ids.shape[1]) != 1)
    frames = torch.zeros(ids.shape[0], 2 * ids.shape[1], dtype=torch.long)
    frames[:, ::2] = ids.long() * keep
    logits = torch.nn.functional.one_hot(frames, 32).float() * 20.0
    return logits, torch.zeros(frames.shape)

info = setup_distributed("cpu")
config = dataclasses.replace(
    load_config("librispeech_conformer"), num_validation_examples=5, num_eval_train_examples=4
)
config = dataclasses.replace(config, model={**config.model, "vocab_size": 32})
fns = dataclasses.replace(get_workload_functions("librispeech_conformer"), forward=forward)
workload = Workload(config, fns, info, data_dir=sys.argv[1])
out = {s: evaluate_split(workload, torch.nn.Identity(), s, seed=0) for s in ("validation", "eval_train")}
train = next(fns.input_iterator(config, workload.data_request("train", 4, 0)))["targets"][0]
gathered = [torch.zeros_like(train) for _ in range(info.world_size)]
if info.is_distributed:
    dist.all_gather(gathered, train)
else:
    gathered = [train]
bn = torch.nn.BatchNorm1d(2)
bn.running_mean.fill_(float(info.rank))  # rank-local statistics, as the Conformer's BN keeps
if info.is_distributed:
    from algoperf_torch.evaluation import average_state_across_ranks
    average_state_across_ranks(bn)
if info.rank == 0:
    out["train"] = torch.cat(gathered).tolist()
    out["bn_mean"] = bn.running_mean.tolist()
    open(sys.argv[2], "w").write(json.dumps(out))
"""


@pytest.mark.slow
def test_two_gloo_ranks_shard_train_and_evaluate_like_one_process(tmp_path, data_dir):
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    results = []
    for launcher in (
        [sys.executable],
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
    ):
        out = tmp_path / f"out{len(results)}.json"
        proc = subprocess.run(
            [*launcher, str(script), str(data_dir), str(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.loads(out.read_text()))
    single, ddp = results
    assert 0 < single["validation"]["wer_true"] < 1  # a non-trivial number to compare
    for split in ("validation", "eval_train"):
        for key in ("wer", "wer_true"):  # integer counts: exact
            assert ddp[split][key] == single[split][key], (split, key)
        # Float32 per-batch loss sums in another grouping: a few ulp (6e-8) apart.
        assert ddp[split]["ctc_loss"] == pytest.approx(single[split]["ctc_loss"], rel=1e-6)
    assert ddp["train"] == single["train"]  # rank 0 + rank 1 = the one-process global batch
    assert ddp["bn_mean"] == [0.5, 0.5]  # the reference's sync_sd before a Conformer eval


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, model",
    [
        ("librispeech_deepspeech", ["encoder_dim=32", "num_lstm_layers=1", "num_ffn_layers=1"]),
        (
            "librispeech_conformer",
            ["encoder_dim=32", "num_attention_heads=2", "num_encoder_layers=1"],
        ),
    ],
)
def test_resumes_exactly_after_sigkill_with_two_workers(tmp_path, data_dir, name, model):
    # The real pipeline, SpecAugment and dropout draws, BN statistics: all restored on resume.
    from test_resume import check_kills_resume_exactly

    args = [
        f"workload={name}",
        f"data.data_dir={data_dir}",
        "data.num_workers=2",
        "batch_size=2",
        *SIZES,
        *(f"workload.model.{m}" for m in model),  # the real blocks, narrower and fewer
    ]
    check_kills_resume_exactly(tmp_path, args)
