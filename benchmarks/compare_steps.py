"""Step times of two source trees side by side: ``bench_steps.py`` of each, alternating.

Before/after figures for a speed change must come from one run in which the old and the new
code take turns on the same machine (machine load drifts; two separate runs are not
comparable). Each round runs, for every workload, the old tree's ``benchmarks/bench_steps.py``
and the new tree's, each in its own process with that tree first on ``PYTHONPATH`` (so its own
``algoperf_torch`` is imported, its own allocator setting applied), the order swapped every round.
Printed: per workload and mode (eager, compiled, and ``default`` = the mode its YAML's
``compile`` selects) the median over rounds of each run's median step, and new / old.

    git worktree add /tmp/old <old commit>
    python benchmarks/compare_steps.py --old /tmp/old --workloads imagenet_resnet imagenet_vit cifar
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tree(tree: str, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """One ``bench_steps.py`` run of ``tree`` on ``workload``: its JSON row."""
    script = os.path.join(tree, "benchmarks", "bench_steps.py")
    if not os.path.exists(script):
        raise SystemExit(f"error: {tree!r} has no benchmarks/bench_steps.py; pass a source tree")
    cmd = [sys.executable, script, "--workloads", workload, "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup), "--gemm-size", "1024", "--peak-repeats", "1"]
    cmd += ["--threads", str(args.threads)] + ["--no-compile"] * args.no_compile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
        proc = subprocess.run(cmd + ["--json-out", out], capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SystemExit(f"error: {tree} {workload}: exit {proc.returncode}: {tail}")
        with open(out) as f:
            (row,) = json.load(f)["workloads"]
    if "error" in row:
        raise SystemExit(f"error: {tree} {workload}: {row['error']}")
    return row


def medians(row: dict[str, Any]) -> dict[str, float]:
    """Median step seconds per mode, plus ``default``: the YAML's own choice."""
    out = {mode: m["median_s"] for mode, m in row["modes"].items()}
    default = "eager" if row["yaml_compile"] == "off" else "compiled"
    if default in out:
        out["default"] = out[default]
    return out


def compare(args: argparse.Namespace) -> dict[str, Any]:
    trees = {"old": args.old, "new": args.new}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        w: {"old": [], "new": []} for w in args.workloads
    }
    defaults: dict[str, dict[str, str]] = {w: {} for w in args.workloads}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for workload in args.workloads:
            for label in order:
                row = run_tree(trees[label], workload, args)
                runs[workload][label].append(medians(row))
                defaults[workload][label] = row["yaml_compile"]
                print(f"round {r + 1} {workload} {label}: done", file=sys.stderr, flush=True)
    table = []
    for workload, by_label in runs.items():
        modes = [m for m in ("eager", "compiled", "default") if m in by_label["new"][0]]
        for mode in modes:
            old = statistics.median(run[mode] for run in by_label["old"])
            new = statistics.median(run[mode] for run in by_label["new"])
            table.append(
                {
                    "workload": workload,
                    "mode": mode,
                    "old_ms": 1e3 * old,
                    "new_ms": 1e3 * new,
                    "ratio": new / old,
                    "old_runs_ms": [1e3 * run[mode] for run in by_label["old"]],
                    "new_runs_ms": [1e3 * run[mode] for run in by_label["new"]],
                    "yaml_compile": defaults[workload] if mode == "default" else None,
                }
            )
    return {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new), "rows": table}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"old: {result['old']}\nnew: {result['new']}",
        f"{'workload':22s} {'mode':9s} {'old ms':>9s} {'new ms':>9s} {'new/old':>8s}  "
        "runs old | new (ms)",
    ]
    for row in result["rows"]:
        mode = row["mode"]
        if row["yaml_compile"]:
            c = row["yaml_compile"]
            mode += f" ({c['old']}->{c['new']})" if c["old"] != c["new"] else f" ({c['new']})"
        runs = " ".join(f"{t:,.0f}" for t in row["old_runs_ms"])
        runs += " | " + " ".join(f"{t:,.0f}" for t in row["new_runs_ms"])
        lines.append(
            f"{row['workload']:22s} {mode:9s} {row['old_ms']:9,.1f} {row['new_ms']:9,.1f} "
            f"{row['ratio']:7.2f}x  {runs}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="the old source tree (e.g. a git worktree)")
    p.add_argument("--new", default=HERE, help="the new source tree (default: this one)")
    p.add_argument("--workloads", nargs="+", default=["imagenet_resnet", "imagenet_vit", "cifar"])
    p.add_argument("--rounds", type=int, default=3, help="old/new pairs per workload (default 3)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per mode and run")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--no-compile", action="store_true", help="eager steps only")
    p.add_argument("--json-out", metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    result = compare(args)
    if args.json_out:
        tmp = args.json_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json_out)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
