"""benchmarks/bench_steps.py: its step timing, FLOP count and table on the digits MLP, eagerly.

python -m pytest tests/test_bench_steps.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    path = os.path.join(REPO, "benchmarks", "bench_steps.py")
    spec = importlib.util.spec_from_file_location("bench_steps", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_bench_workload_row_is_sane(bench):
    options = bench.Options(steps=2, warmup=1, compile=False)
    peaks = bench.measure_peaks("cpu", gemm_size=128, conv_batch=1, repeats=1)
    assert all(peaks[k] > 0 for k in bench.PEAK_KEYS)
    row = bench.summarize(bench.bench_workload("digits", options), peaks)
    assert row["batch_size"] == bench.DEFAULT_BATCH["cpu"]["digits"]
    # The MLP 64-128-10 at batch 64: forward 2*64*(64*128 + 128*10) FLOPs, backward twice that
    # less the input gradient of the first layer, which nothing needs.
    forward = 2 * 64 * (64 * 128 + 128 * 10)
    assert row["flops"]["total"] == 3 * forward - 2 * 64 * 64 * 128
    assert row["flops"]["conv"] == 0 and row["conv_share"] == 0.0
    assert list(row["modes"]) == ["eager"]
    eager = row["modes"]["eager"]
    assert len(eager["times_s"]) == 2 and all(t > 0 for t in eager["times_s"])
    assert eager["min_s"] <= eager["median_s"] <= eager["max_s"]
    assert eager["gflops_per_s"] > 0 and eager["pct_gemm_peak"] > 0
    assert eager["pct_conv_peak"] is None  # not a conv net
    assert eager["peak_mem_mib"] > 0
    machine = bench.machine_info("cpu", tf32=False, options=options)
    table = bench.format_table([row], peaks, machine)
    assert "digits" in table and "eager" in table and "GFLOP/s" in table
    route = "oneDNN" if machine["onednn_gemm"] else "the BLAS"
    assert f"linear GEMMs via {route}" in table  # the route this CPU's Linear takes
    assert "reference kernels" in bench.format_table(
        [row], peaks, {**machine, "fast_kernels": False}
    )
    json.dumps(row)  # the --json output is plain data


def test_linears_run_as_1x1_convolutions_count_as_gemms(bench):
    import torch
    import torch.nn.functional as F

    from algoperf_torch.layers.fast import onednn_linear

    x, w = torch.randn(64, 32, requires_grad=True), torch.randn(16, 32, requires_grad=True)
    images, kernel = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3, requires_grad=True)

    def step():
        onednn_linear(x, w, None).sum().backward()  # 3 x 2*64*32*16 FLOPs
        F.conv2d(images, kernel).sum().backward()  # forward + weight gradient: 2 x 2*2*4*27*36

    flops = bench.count_flops(step)
    assert flops["gemm_as_conv"] == 3 * 2 * 64 * 32 * 16
    assert flops["conv"] == 2 * 2 * 2 * 4 * 27 * 36
    assert flops["total"] == flops["conv"] + flops["gemm_as_conv"]


def test_main_json_in_process(bench, capsys):
    argv = ["--workloads", "digits", "--steps", "2", "--warmup", "1", "--no-compile"]
    argv += ["--in-process", "--json", "--gemm-size", "128", "--peak-repeats", "1"]
    assert bench.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"machine", "peaks", "workloads"}
    (row,) = out["workloads"]
    assert row["workload"] == "digits" and row["modes"]["eager"]["median_s"] > 0


def test_unknown_workload_lists_names(bench, capsys):
    assert bench.main(["--workloads", "nope", "--in-process"]) == 2
    assert "digits" in capsys.readouterr().err
