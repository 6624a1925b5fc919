"""Run every PyTorch submission of a checkout of mlcommons/submissions_algorithms, unmodified.

    python benchmarks/run_published_submissions.py /path/to/submissions_algorithms \
        --experiment-dir /tmp/published [--steps 20] [--only shampoo] [--device cuda]

Each submission runs as a user would run it: ``python -m algoperf_torch workload=mnist
data=synthetic max_steps=N optimizer=file optimizer.path=<folder>/submission.py``, with
``optimizer.hparams=<folder>/tuning_search_space.json`` for external tuning and ``tuning=self``
for self-tuning. A submission is PyTorch when its ``submission_info.yml`` says so or, without
that, when its ``submission.py`` imports torch and not jax. Prints one row per submission (did
it import, get into ``init_optimizer_state``, run all steps; the error message if not) and
writes them to ``<experiment-dir>/results.json``. No submission code is part of this project.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEADERBOARDS = (
    "previous_leaderboards/algoperf_v05/submissions",
    "previous_leaderboards/algoperf_v06/submissions",
    "submissions",
)


def is_pytorch(folder: str) -> bool:
    for name in ("submission_info.yml", "submission_info.yaml", "submissions_info.yaml"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            match = re.search(r"^framework:\s*\"?(\w+)", open(path, encoding="utf-8").read(), re.M)
            if match:
                return match.group(1).lower() == "pytorch"
    source = open(os.path.join(folder, "submission.py"), encoding="utf-8").read()
    uses = lambda m: re.search(rf"^\s*(import|from) {m}\b", source, re.M)  # noqa: E731
    return bool(uses("torch")) and not uses("jax")


def find_submissions(root: str) -> list[tuple[str, str, str]]:
    """(leaderboard, ruleset, folder) of each PyTorch submission under ``root``."""
    found = []
    for board in LEADERBOARDS:
        for ruleset in ("external_tuning", "self_tuning"):
            base = os.path.join(root, board, ruleset)
            if not os.path.isdir(base):
                continue
            for name in sorted(os.listdir(base)):
                folder = os.path.join(base, name)
                if os.path.isfile(os.path.join(folder, "submission.py")) and is_pytorch(folder):
                    found.append(
                        (board.split("/")[1] if "/" in board else "rolling", ruleset, folder)
                    )
    return found


def run_one(
    folder: str,
    ruleset: str,
    out_dir: str,
    steps: int,
    device: str | None,
    timeout: float,
    max_runtime: float,
) -> dict:
    args = [
        "workload=mnist",
        "data=synthetic",
        f"max_steps={steps}",
        # A loaded machine must not end a 20-step smoke run on the time budget.
        f"workload.max_runtime={max_runtime}",
        "optimizer=file",
        f"optimizer.path={folder}/submission.py",
        f"experiment_dir={out_dir}",
        "progress=off",
    ]
    if ruleset == "self_tuning":
        args.append("tuning=self")
    else:
        args.append(f"optimizer.hparams={folder}/tuning_search_space.json")
    if device:
        args.append(f"device={device}")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "algoperf_torch", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        output, rc = (e.stdout or b"").decode() + (e.stderr or b"").decode(), "timeout"
    summaries = [
        os.path.join(d, "summary.json")
        for d, _, files in os.walk(out_dir)
        if "summary.json" in files
    ]
    summary = json.load(open(summaries[0])) if summaries else {}
    step = summary.get("global_step")
    errors = [line[len("error: ") :] for line in output.splitlines() if line.startswith("error: ")]
    if errors:
        message = errors[-1]
    elif summary:
        message = f"stopped at step {step}: stop_reason={summary.get('stop_reason')}"
    else:
        message = (output.strip().splitlines() or [""])[-1]
    imported = not (errors and ("imports" in message or "does not define" in message))
    return {
        "folder": folder,
        "rc": rc,
        "steps": step,
        "stop_reason": summary.get("stop_reason"),
        "seconds": round(time.monotonic() - start, 1),
        "imports": imported and rc != "timeout" or step is not None,
        # A traceback or message through init_optimizer_state means the submission got there.
        "init_optimizer_state": step is not None
        or any(f in output for f in ("init_optimizer_state", "update_params")),
        "ran_all_steps": step == steps,
        "message": "" if step == steps else message,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="a checkout of mlcommons/submissions_algorithms")
    parser.add_argument("--experiment-dir", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", default="", help="run only folders whose path contains this")
    parser.add_argument("--device", default=None, help="device=... for the runs (cpu, cuda)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per submission")
    parser.add_argument(
        "--max-runtime", type=float, default=3600, help="workload.max_runtime for the runs"
    )
    args = parser.parse_args()
    rows = []
    for board, ruleset, folder in find_submissions(os.path.abspath(args.root)):
        if args.only not in folder:
            continue
        tag = f"{board}-{ruleset}-{os.path.basename(folder)}"
        row = {
            "leaderboard": board,
            "ruleset": ruleset,
            "name": os.path.basename(folder),
            **run_one(
                folder,
                ruleset,
                os.path.join(args.experiment_dir, tag),
                args.steps,
                args.device,
                args.timeout,
                args.max_runtime,
            ),
        }
        rows.append(row)
        print(
            f"{board:6} {ruleset:15} {row['name']:34} imports={row['imports']!s:5} "
            f"init={row['init_optimizer_state']!s:5} steps={row['steps']} "
            f"({row['seconds']} s) {row['message']}",
            flush=True,
        )
    os.makedirs(args.experiment_dir, exist_ok=True)
    with open(os.path.join(args.experiment_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
