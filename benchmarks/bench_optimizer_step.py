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


def time_steps(step: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median seconds of ``step`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_table_entry(name: str, shapes, warmup: int, repeats: int) -> float:
    info = OPTIMIZERS[name]
    params = make_params(shapes)
    h = {k: v for k, v in HPARAMS.items() if k in info.hparams}
    if name == "shampoo":  # roots once at step 1, never again: the plain step
        h.update(precondition_frequency=10**9, start_preconditioning_step=1)
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

    return time_steps(step, warmup, repeats)


def bench_shampoo_roots(shapes, repeats: int) -> float:
    """A Shampoo step that recomputes every root inverse (precondition_frequency = 1)."""
    params = make_params(shapes)
    h = dict(HPARAMS, precondition_frequency=1, start_preconditioning_step=1)
    opt = OPTIMIZERS["shampoo"].build(params, h)
    return time_steps(opt.step, 0, repeats)


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

    def adamw_step_time() -> float:
        params = make_params(shapes)
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True)
        return time_steps(opt.step, args.warmup, args.repeats)

    rows: list[tuple[str, float]] = [("torch AdamW(foreach)", adamw_step_time())]
    for name in args.only or list(OPTIMIZERS):
        rows.append((name, bench_table_entry(name, shapes, args.warmup, args.repeats)))
        if name == "shampoo":
            rows.append(("shampoo + root inverses", bench_shampoo_roots(shapes, args.root_repeats)))
    rows.append(("torch AdamW(foreach) again", adamw_step_time()))
    base = statistics.mean([rows[0][1], rows[-1][1]])
    print(f"{'optimizer':28s} {'median step (ms)':>17s} {'vs AdamW':>9s}")
    for name, t in rows:
        print(f"{name:28s} {t * 1e3:17.1f} {t / base:8.2f}x")


if __name__ == "__main__":
    main()
