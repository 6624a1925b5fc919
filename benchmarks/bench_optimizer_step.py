"""Time one ``optimizer.step()`` of every optimizer in the table on ResNet-50-sized parameters.

The 161 parameter shapes of torchvision's resnet50 (25.6 M parameters, built on the meta device
for their shapes only), filled with random values and random gradients, on CPU. Every optimizer
is timed in the same run as ``torch.optim.AdamW(foreach=True)``; the table shows medians over
``--repeats`` steps after ``--warmup`` steps, and ratios to AdamW. Shampoo is shown twice: a step
that only applies the current roots, and a step that also recomputes them (the eigh cost).

    python benchmarks/bench_optimizer_step.py --repeats 5
    python benchmarks/bench_optimizer_step.py --params-scale 0.5 --only nadamw shampoo
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from algoperf_torch.optimizers import OPTIMIZERS

HPARAMS = dict(
    learning_rate=1e-3,
    one_minus_beta1=0.1,
    beta2=0.999,
    weight_decay=0.01,
    warmup_factor=0.05,
    decay_steps_factor=0.9,
    end_factor=0.01,
    rho=0.05,
    r=0.75,
    weight_lr_power=2.0,
)


def resnet50_shapes(scale: float) -> list[tuple[int, ...]]:
    """resnet50's parameter shapes; with ``scale < 1`` every dim > 4 is multiplied by it."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    shapes = [tuple(p.shape) for p in model.parameters()]
    if scale != 1.0:
        shapes = [tuple(max(1, round(d * scale)) if d > 4 else d for d in s) for s in shapes]
    return shapes


def make_params(shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.05) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    return params


def time_pair(step: Callable[[], None], ref: Callable[[], None], warmup: int, repeats: int):
    """Medians of ``step`` and ``ref`` (AdamW), timed alternately so machine load hits both."""
    for _ in range(warmup):
        step()
        ref()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((step, times[0]), (ref, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def adamw_step(shapes) -> Callable[[], None]:
    """One step of ``torch.optim.AdamW(foreach=True)`` on its own copy of the parameters."""
    params = make_params(shapes, seed=1)
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True).step


def table_entry_step(name: str, shapes, **overrides) -> Callable[[], None]:
    """One ``step()`` of the table's optimizer ``name`` (SAM: a closure restoring the grads)."""
    info = OPTIMIZERS[name]
    params = make_params(shapes)
    h = {k: v for k, v in HPARAMS.items() if k in info.hparams}
    h.update(overrides)
    opt = info.build(params, h)
    grads = [p.grad for p in params]

    def closure() -> torch.Tensor:  # SAM's second pass: fixed "gradients", no model
        for p, g in zip(params, grads):
            p.grad = g
        return torch.zeros(())

    def step() -> None:
        if info.train_eval_modes:
            opt.train()
        opt.step(closure) if info.uses_closure else opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--params-scale",
        type=float,
        default=1.0,
        help="multiply every dim > 4 by this (1.0 = resnet50's 25.6 M params)",
    )
    parser.add_argument("--root-repeats", type=int, default=1, help="timed Shampoo root steps")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--only", nargs="*", default=None, help="optimizer names to time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = resnet50_shapes(args.params_scale)
    n = sum(torch.Size(s).numel() for s in shapes)
    print(f"{len(shapes)} tensors, {n / 1e6:.1f} M parameters, {torch.get_num_threads()} threads")
    print(f"{'optimizer':26s} {'step (ms)':>10s} {'AdamW (ms)':>11s} {'vs AdamW':>9s}")
    ref = adamw_step(shapes)
    for name in args.only or list(OPTIMIZERS):
        # Shampoo's plain step: roots once at step 1 (in the warmup), then never again.
        kw = dict(precondition_frequency=10**9, start_preconditioning_step=1)
        step = table_entry_step(name, shapes, **(kw if name == "shampoo" else {}))
        t, t_ref = time_pair(step, ref, args.warmup, args.repeats)
        print(f"{name:26s} {t * 1e3:10.1f} {t_ref * 1e3:11.1f} {t / t_ref:8.2f}x", flush=True)
        if name == "shampoo":  # every step recomputes every root inverse
            step = table_entry_step(name, shapes, precondition_frequency=1)
            t, t_ref = time_pair(step, ref, 0, args.root_repeats)
            label = "shampoo + root inverses"
            print(f"{label:26s} {t * 1e3:10.1f} {t_ref * 1e3:11.1f} {t / t_ref:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
