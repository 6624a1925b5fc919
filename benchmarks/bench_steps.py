"""Time one full training step of each registered workload, against the machine's measured peak.

A step is what the runner's default submission does on a batch already on the device: forward
(``model_fn`` in TRAIN mode), ``loss_fn``, backward and a NAdamW step with the NAdamW YAML's
point, through ``submission.OptimizerSubmission.update_params`` itself. Each workload is timed
eager and compiled (``runner.maybe_compile``: the YAML's ``compile`` choice, or ``model`` where
the YAML says ``off``; a ``compile_cpu`` choice only decides which mode is the CPU default), the
two alternating step by step after warm-up so machine load hits both alike. FLOPs of one step
(forward and backward) come from ``FlopCounterMode``; the fp32 GEMM and channels-last 3x3 convolution peaks are measured before and after the workloads, in the same
run. Each workload runs in its own process (clean memory high-water, an empty inductor cache)
unless ``--in-process``. The columns are explained in README.md, "Speed".

    python benchmarks/bench_steps.py                              # every workload, CPU
    python benchmarks/bench_steps.py --workloads cifar imagenet_resnet --steps 7 --json
    python benchmarks/bench_steps.py --device cuda --tf32
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from algoperf_torch import rng as prng
from algoperf_torch.__main__ import optimizer_yaml_hparams
from algoperf_torch.distributed import DistInfo
from algoperf_torch.host_memory import retain_freed_memory
from algoperf_torch.layers.fast import cpuinfo_field, onednn_gemm_preferred
from algoperf_torch.pipelines.state import to_device
from algoperf_torch.runner import maybe_compile
from algoperf_torch.submission import OptimizerSubmission, make_hyperparameters
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config, workload_names

# Batch per workload code (variants share their base's). CPU: small enough for 2 cores. CUDA:
# one of the reference's 8 GPUs' share of the baseline's global batch (ImageNet 1024 / 8).
DEFAULT_BATCH = {
    "cpu": {
        "digits": 64,
        "mnist": 64,
        "cifar": 64,
        "imagenet_resnet": 8,
        "imagenet_vit": 8,
        "criteo1tb": 1024,  # the CPU anchor; 2.1 GB model + NAdamW state
        "fastmri": 4,  # the baseline's per-GPU batch (32 / 8)
        "librispeech_conformer": 4,  # 4 utterances padded to 320,000 samples, as the reference
        "librispeech_deepspeech": 4,
        "ogbg": 512,  # the baseline's batch
        "wmt": 2,  # packed rows of 256 tokens; the model is 133.5M parameters
        "finewebedu_lm": 1,  # one 1,024-token window
    },
    "cuda": {
        "digits": 64,
        "mnist": 128,
        "cifar": 128,
        "imagenet_resnet": 128,
        "imagenet_vit": 128,
        "criteo1tb": 32768,  # 262,144 / 8
        "fastmri": 4,
        "librispeech_conformer": 32,  # 256 / 8
        "librispeech_deepspeech": 32,
        "ogbg": 512,
        "wmt": 16,  # 128 / 8
        "finewebedu_lm": 16,  # one of 4 A100s' share of 64 (spec §13.3)
    },
}
PEAK_KEYS = ("gemm_gflops", "gemm_as_1x1_conv_gflops", "conv_gflops")
CONV_SHARE_FOR_CONV_PEAK = 0.5  # a "conv net": at least this share of its FLOPs in convolutions


@dataclasses.dataclass(frozen=True)
class Options:
    """How each workload is measured (one process's slice of the command line)."""

    device: str = "cpu"
    batch_size: int | None = None  # None: DEFAULT_BATCH
    steps: int = 5
    warmup: int = 2
    compile: bool = True
    dropout_rate: float | None = None  # None: the NAdamW YAML's point
    seed: int = 0
    fast_kernels: bool = True  # False: the reference's kernels (workload.fast_kernels=false)
    retain_host_memory: bool = True  # as the runner's retain_host_memory (host_memory.py)


# --- clock, memory and FLOPs ----------------------------------------------------------------
def timed(fn: Callable[[], Any], device: str) -> float:
    """Seconds ``fn`` takes, the device synchronised before both clock readings."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def _vm_hwm_bytes() -> int:
    """This process's RSS high-water (Linux VmHWM; elsewhere getrusage, which cannot be reset)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _vm_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def step_peak_memory(step: Callable[[], None], device: str) -> int:
    """High-water bytes during one ``step``: CUDA max allocated, CPU process RSS."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    try:  # Linux resets VmHWM to the current RSS on "5" (proc(5), clear_refs)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    step()
    return _vm_hwm_bytes()


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors a copy keeps between steps: params, buffers, grads, optimizer state."""
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _flash_cpu_fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _flash_cpu_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    # FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel that
    # scaled_dot_product_attention picks without dropout; the same formulas apply.
    aten = torch.ops.aten
    if not hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        return {}
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu_fwd,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_bwd,
    }


def _gemm_as_conv(x_shape, w_shape) -> bool:
    """A 1x1 convolution over a ``[1, K, M, 1]`` image: ``layers/fast.onednn_linear``'s GEMM."""
    return len(x_shape) == 4 and x_shape[0] == 1 and x_shape[3] == 1 and w_shape[2:] == (1, 1)


def count_flops(step: Callable[[], None]) -> dict[str, int]:
    """FLOPs of one ``step``: total, and the parts in convolutions and attention kernels.

    Linear layers that the fast kernels run as 1x1 convolutions count as GEMMs, not convolutions
    (``gemm_as_conv``), so a transformer is still measured against the GEMM peak."""
    gemm_as_conv = [0]
    conv_fwd, conv_bwd = (
        flop_counter.conv_flop.__wrapped__,
        flop_counter.conv_backward_flop.__wrapped__,
    )

    def fwd(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        n = conv_fwd(x_shape, w_shape, *args, out_shape=out_shape, **kwargs)
        gemm_as_conv[0] += n if _gemm_as_conv(tuple(x_shape), tuple(w_shape)) else 0
        return n

    def bwd(grad_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        n = conv_bwd(grad_shape, x_shape, w_shape, *args, out_shape=out_shape, **kwargs)
        gemm_as_conv[0] += n if _gemm_as_conv(tuple(x_shape), tuple(w_shape)) else 0
        return n

    aten = torch.ops.aten
    mapping = {aten.convolution: fwd, aten._convolution: fwd, aten.convolution_backward: bwd}
    counter = FlopCounterMode(display=False, custom_mapping={**_extra_flop_formulas(), **mapping})
    with counter:
        step()
    per_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    return {
        "total": counter.get_total_flops(),
        "conv": sum(n for op, n in per_op.items() if "convolution" in op) - gemm_as_conv[0],
        "gemm_as_conv": gemm_as_conv[0],
        "attention": sum(n for op, n in per_op.items() if "attention" in op),
    }


# --- peaks ----------------------------------------------------------------------------------
def measure_peaks(device: str, gemm_size: int = 4096, conv_batch: int = 0, repeats: int = 5):
    """Best-of-``repeats`` GFLOP/s of an fp32 ``n x n`` GEMM and a channels-last 3x3 convolution
    (256 -> 256 channels on 56 x 56, ResNet-50's stage-1 width doubled; batch 0: 8 CPU, 64 CUDA).

    Also the same GEMM written as a 1x1 convolution, which runs through the convolution library
    (oneDNN on CPU) instead of the BLAS ``torch.mm`` calls: on some CPUs (MKL on AMD) the two
    differ by 2x, so the % of the ``torch.mm`` peak is not the % of what the hardware can do.
    """
    calls = 10 if device == "cuda" else 1  # several launches per reading on a GPU
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(gemm_size, gemm_size, generator=gen).to(device) for _ in range(2))
    out = torch.empty_like(a)
    conv_batch = conv_batch or (64 if device == "cuda" else 8)
    x = torch.randn(conv_batch, 256, 56, 56, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, generator=gen).to(device)
    w = w.contiguous(memory_format=torch.channels_last)
    # [1, K, M, 1] x [N, K, 1, 1]: an M x K by K x N product, M = K = N = gemm_size.
    x_mm = torch.randn(1, gemm_size, gemm_size, 1, generator=gen).to(device)
    x_mm = x_mm.contiguous(memory_format=torch.channels_last)
    w_mm = torch.randn(gemm_size, gemm_size, 1, 1, generator=gen).to(device)
    w_mm = w_mm.contiguous(memory_format=torch.channels_last)

    def best(fn: Callable[[], Any], flops: float) -> float:
        fn()  # warm-up: kernel selection, page faults
        seconds = min(timed(lambda: [fn() for _ in range(calls)], device) for _ in range(repeats))
        return flops * calls / seconds / 1e9

    with torch.no_grad():
        gemm = best(lambda: torch.mm(a, b, out=out), 2.0 * gemm_size**3)
        gemm_as_conv = best(lambda: F.conv2d(x_mm, w_mm), 2.0 * gemm_size**3)
        conv = best(lambda: F.conv2d(x, w, padding=1), 2.0 * conv_batch * 256 * 256 * 9 * 56 * 56)
    return {
        "gemm_gflops": gemm,
        "gemm_size": gemm_size,
        "gemm_as_1x1_conv_gflops": gemm_as_conv,
        "conv_gflops": conv,
        "conv_batch": conv_batch,
    }


# --- one workload ---------------------------------------------------------------------------
def default_submission(dropout_rate: float | None) -> OptimizerSubmission:
    """The runner's default submission: NAdamW at its YAML's point (``optimizer=nadamw``)."""
    point = optimizer_yaml_hparams({"name": "nadamw"})
    if dropout_rate is not None:
        point["dropout_rate"] = dropout_rate
    return OptimizerSubmission("nadamw", point, {})


@dataclasses.dataclass
class TrainedCopy:
    """One model and its optimizer; ``step()`` is one ``update_params`` on the fixed batch."""

    step: Callable[[], None]
    state_bytes: Callable[[], int]


def make_copy(name: str, compile_choice: str, batch: dict, options: Options) -> TrainedCopy:
    """A model built as the runner builds it, with ``compile_choice`` as its YAML's ``compile``."""
    config = dataclasses.replace(
        load_config(name),
        compile=compile_choice,
        compile_cpu=None,
        fast_kernels=options.fast_kernels,
    )
    workload = Workload(
        config, get_workload_functions(config.impl), DistInfo(device=device_of(options))
    )
    submission = default_submission(options.dropout_rate)
    hparams = make_hyperparameters(submission.hparams)
    model, _ = workload.init_model_fn(prng.prng_key(options.seed))
    model = maybe_compile(model, workload)
    opt_state = submission.init_optimizer_state(workload, model, None, hparams, None)
    global_step = 0

    def step() -> None:
        nonlocal global_step
        global_step += 1
        submission.update_params(
            workload=workload,
            current_param_container=model,
            current_params_types=workload.model_params_types,
            model_state=None,
            hyperparameters=hparams,
            batch=batch,
            loss_type=workload.loss_type,
            optimizer_state=opt_state,
            eval_results=[],
            global_step=global_step,
            rng=None,
        )

    return TrainedCopy(step, lambda: state_bytes(model, opt_state["optimizer"]))


def device_of(options: Options) -> torch.device:
    return torch.device("cuda", 0) if options.device == "cuda" else torch.device("cpu")


def batch_size_for(name: str, options: Options) -> int:
    if options.batch_size is not None:
        return options.batch_size
    impl = load_config(name).impl
    if impl not in DEFAULT_BATCH[options.device]:
        raise KeyError(f"no default {options.device} batch size for {name}; pass --batch-size")
    return DEFAULT_BATCH[options.device][impl]


def _dynamo_counts() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def warm_up(step: Callable[[], None], n: int, device: str) -> list[float]:
    return [timed(step, device) for _ in range(n)]


def time_alternately(steps: dict[str, Callable[[], None]], n: int, device: str):
    """``n`` timings of each step, interleaved (and who goes first alternating) so that a
    change in machine load hits every step alike."""
    labels = list(steps)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for i in range(n):
        for label in labels if i % 2 == 0 else labels[::-1]:
            times[label].append(timed(steps[label], device))
    return times


def spread(times: list[float]) -> dict[str, Any]:
    t = sorted(times)
    q = statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else [t[0]] * 3
    return {
        "times_s": times,
        "median_s": statistics.median(t),
        "min_s": t[0],
        "max_s": t[-1],
        "iqr_s": q[2] - q[0],
    }


def prepare_compiled(name: str, config, batch: dict, options: Options, eager: TrainedCopy):
    """The compiled copy after its warm-up, and what compiling it took (times, graphs)."""
    choice = "model" if config.compile == "off" else config.compile
    graphs0, breaks0 = _dynamo_counts()
    compiled = make_copy(name, choice, batch, options)
    # The first call compiles; the second shows a recompile, if any.
    info: dict[str, Any] = {"compiled_as": choice}
    info["warmup_s"] = warm_up(compiled.step, max(2, options.warmup), options.device)
    # Both copies are resident now: count only the compiled copy's own state.
    peak = step_peak_memory(compiled.step, options.device) - eager.state_bytes()
    info["peak_mem_mib"] = peak / 2**20
    graphs1, breaks1 = _dynamo_counts()
    info.update(graphs=graphs1 - graphs0, graph_breaks=breaks1 - breaks0)
    return compiled, info


def bench_workload(name: str, options: Options) -> dict[str, Any]:
    """Time, count and weigh one workload's training step eager (and compiled); a JSON row."""
    config = load_config(name)
    device = options.device
    batch_size = batch_size_for(name, options)
    gen = torch.Generator().manual_seed(options.seed)
    functions = get_workload_functions(config.impl)
    batch = to_device(functions.synthetic_batch(config, batch_size, gen), device_of(options))
    row: dict[str, Any] = {"workload": name, "batch_size": batch_size}
    row["yaml_compile"] = config.compile_choice(device)  # the default on this device
    row["base_rss_mib"] = _vm_rss_bytes() / 2**20 if device == "cpu" else None

    eager = make_copy(name, "off", batch, options)
    modes = {"eager": {"warmup_s": warm_up(eager.step, options.warmup, device)}}
    row["flops"] = count_flops(eager.step)
    modes["eager"]["peak_mem_mib"] = step_peak_memory(eager.step, device) / 2**20
    steps = {"eager": eager.step}
    if options.compile:
        compiled, modes["compiled"] = prepare_compiled(name, config, batch, options, eager)
        steps["compiled"] = compiled.step
        graphs_before = _dynamo_counts()[0]

    times = time_alternately(steps, options.steps, device)
    for label, mode in modes.items():
        mode.update(spread(times[label]))
    if options.compile:
        c, eager_median = modes["compiled"], modes["eager"]["median_s"]
        c["recompiled_while_timed"] = _dynamo_counts()[0] != graphs_before
        c["compile_s"] = c["warmup_s"][0] - eager_median
        c["speedup"] = eager_median / c["median_s"]
    row["modes"] = modes
    del eager, steps, batch
    if options.compile:
        del compiled
    torch._dynamo.reset()
    gc.collect()
    return row


# --- the table ------------------------------------------------------------------------------
def summarize(row: dict[str, Any], peaks: dict[str, Any]) -> dict[str, Any]:
    """Add achieved GFLOP/s and % of the GEMM (and, for conv nets, conv) peak to every mode."""
    if "error" in row:
        return row
    flops = row["flops"]
    conv_share = flops["conv"] / flops["total"] if flops["total"] else 0.0
    row["conv_share"] = conv_share
    for mode in row["modes"].values():
        achieved = flops["total"] / mode["median_s"] / 1e9
        mode["gflops_per_s"] = achieved
        mode["pct_gemm_peak"] = 100 * achieved / best_gemm_peak(peaks)
        conv_net = conv_share >= CONV_SHARE_FOR_CONV_PEAK
        mode["pct_conv_peak"] = 100 * achieved / peaks["conv_gflops"] if conv_net else None
    return row


def best_gemm_peak(peaks: dict[str, Any]) -> float:
    """The fastest fp32 GEMM measured: ``torch.mm`` (the BLAS) or the same product through
    oneDNN as a 1x1 convolution, which the fast kernels use for linear layers."""
    return max(peaks["gemm_gflops"], peaks["gemm_as_1x1_conv_gflops"])


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def _kernels_label(machine: dict[str, Any]) -> str:
    if not machine["fast_kernels"]:
        return ", reference kernels"
    if machine["device"] != "cpu":
        return ""
    return f", linear GEMMs via {'oneDNN' if machine['onednn_gemm'] else 'the BLAS'}"


def format_table(rows: list[dict[str, Any]], peaks: dict[str, Any], machine: dict[str, Any]) -> str:
    lines = [
        f"{machine['device_name']} ({machine['device']}, {machine['threads']} threads, "
        f"torch {machine['torch']}{', TF32' if machine['tf32'] else ''}"
        f"{_kernels_label(machine)}"
        f"{'' if machine['retain_host_memory'] else ', host memory released'}): "
        f"fp32 GEMM {peaks['gemm_size']}^2 {peaks['gemm_gflops']:,.0f} GFLOP/s "
        f"(as a 1x1 conv {peaks['gemm_as_1x1_conv_gflops']:,.0f}), "
        f"channels-last 3x3 conv {peaks['conv_gflops']:,.0f} GFLOP/s",
        f"{'workload':30s} {'batch':>5s} {'mode':8s} {'ms/step':>9s} {'min-max ms':>17s} "
        f"{'GFLOP':>7s} {'GFLOP/s':>8s} {'%GEMM':>6s} {'%conv':>6s} {'peak MiB':>9s} "
        f"{'base MiB':>8s} {'compile s':>9s} {'speed-up':>8s}",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['workload']:30s} error: {row['error']}")
            continue
        for label, m in row["modes"].items():
            first = label == "eager"
            name, batch = (row["workload"], str(row["batch_size"])) if first else ("", "")
            base = row["base_rss_mib"] if first else None
            conv = "-" if m["pct_conv_peak"] is None else f"{m['pct_conv_peak']:.0f}%"
            spread = f"{m['min_s'] * 1e3:,.1f}-{m['max_s'] * 1e3:,.1f}"
            extra = "" if first else f"{m['compile_s']:9.1f} {m['speedup']:7.2f}x"
            if m.get("recompiled_while_timed"):
                extra += " (recompiled while timed)"
            lines.append(
                f"{name:30s} {batch:>5s} {label:8s} {m['median_s'] * 1e3:9,.1f} {spread:>17s} "
                f"{_num(row['flops']['total'] / 1e9):>7s} {_num(m['gflops_per_s']):>8s} "
                f"{m['pct_gemm_peak']:5.0f}% {conv:>6s} {m['peak_mem_mib']:9,.0f} "
                f"{'' if base is None else f'{base:,.0f}':>8s} {extra}".rstrip()
            )
    return "\n".join(lines)


def machine_info(device: str, tf32: bool, options: Options) -> dict[str, Any]:
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
    else:
        name = cpuinfo_field("model name") or platform.processor() or platform.machine()
    return {
        "device": device,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "tf32": tf32,
        "fast_kernels": options.fast_kernels,
        # The route layers/fast.py's Linear takes on this CPU (set_fast_kernels' default).
        "onednn_gemm": options.fast_kernels and onednn_gemm_preferred(),
        "retain_host_memory": options.retain_host_memory,
    }


# --- command line ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", nargs="+", default=None, help="names (default: every workload)")
    p.add_argument("--batch-size", type=int, default=None, help="one batch size for every workload")
    p.add_argument("--steps", type=int, default=5, help="timed steps per mode (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first (default 2)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--tf32", action="store_true", help="TF32 matmuls and convolutions (CUDA)")
    p.add_argument("--no-compile", action="store_true", help="eager steps only")
    p.add_argument(
        "--reference-kernels",
        action="store_true",
        help="the reference's kernels (workload.fast_kernels=false), not layers/fast.py's",
    )
    p.add_argument(
        "--release-host-memory",
        action="store_true",
        help="glibc's default malloc (the runner's retain_host_memory=false)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument("--dropout-rate", type=float, default=None, help="default: NAdamW's point")
    p.add_argument("--gemm-size", type=int, default=4096, help="n of the peak n x n GEMM")
    p.add_argument("--peak-repeats", type=int, default=5, help="peak readings; the best counts")
    p.add_argument("--in-process", action="store_true", help="no subprocess per workload")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--json-out", metavar="PATH", help="also write the JSON to PATH")
    p.add_argument("--row-out", help=argparse.SUPPRESS)  # a child writes its one row here
    args = p.parse_args(argv)
    if args.tf32 and args.device != "cuda":
        p.error("--tf32 is a CUDA setting; use it with --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but no CUDA device is available")
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


def options_of(args: argparse.Namespace) -> Options:
    return Options(
        device=args.device,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        compile=not args.no_compile,
        dropout_rate=args.dropout_rate,
        fast_kernels=not args.reference_kernels,
        retain_host_memory=not args.release_host_memory,
    )


def setup_torch(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``bench_workload`` in a fresh process with the same options; errors become the row."""
    flags = ["--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    flags += ["--threads", str(args.threads)]
    flags += [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
    flags += [] if args.dropout_rate is None else ["--dropout-rate", str(args.dropout_rate)]
    flags += ["--tf32"] * args.tf32 + ["--no-compile"] * args.no_compile
    flags += ["--reference-kernels"] * args.reference_kernels
    flags += ["--release-host-memory"] * args.release_host_memory
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "row.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--workloads", name, "--row-out", out]
        # A fresh inductor cache: compile times are a first run's, not a cache hit's.
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(tmp, "inductor")}
        proc = subprocess.run(cmd + flags, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"workload": name, "error": f"exit {proc.returncode}: {tail[0]}"}
        with open(out) as f:
            return json.load(f)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_torch(args)
    names = args.workloads or workload_names()
    options = options_of(args)
    if options.retain_host_memory:
        retain_freed_memory()
    if args.row_out:  # a child: one workload, its row to a file
        with open(args.row_out, "w") as f:
            json.dump(bench_workload(names[0], options), f)
        return 0
    try:
        for name in names:
            load_config(name)  # an unknown name fails here, listing the valid ones
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    machine = machine_info(args.device, args.tf32, options)
    start = measure_peaks(args.device, args.gemm_size, repeats=args.peak_repeats)
    rows = []
    for name in names:
        row = bench_workload(name, options) if args.in_process else run_child(name, args)
        rows.append(row)
        print(f"{name}: {row.get('error', 'done')}", file=sys.stderr, flush=True)
    # Read again at the end, the best of both kept: a peak read while the machine was busy
    # would flatter every workload's % of it.
    end = measure_peaks(args.device, args.gemm_size, repeats=args.peak_repeats)
    peaks = {**start, **{k: max(start[k], end[k]) for k in PEAK_KEYS}}
    peaks["readings"] = {"start": start, "end": end}
    rows = [summarize(row, peaks) for row in rows]
    result = {"machine": machine, "peaks": peaks, "workloads": rows}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1) if args.json else format_table(rows, peaks, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
