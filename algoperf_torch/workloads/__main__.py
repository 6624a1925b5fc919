"""List every registered workload and variant: parameters, target, budget.

    python -m algoperf_torch.workloads                 # a table
    python -m algoperf_torch.workloads --json          # a JSON list of objects
    python -m algoperf_torch.workloads --shapes mnist  # each parameter's name and shape
    python -m algoperf_torch.workloads --shapes mnist --json

Parameter counts come from building each model on the meta device: no memory, no time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from algoperf_torch.yaml_compose import compose_yaml

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "conf", "workload")


def load_config(name: str):
    """The ``WorkloadConfig`` of a YAML in conf/workload/, its defaults chain merged."""
    from algoperf_torch.spec import WorkloadConfig

    return WorkloadConfig.from_dict(load_yaml(name))


def load_yaml(name: str) -> dict[str, Any]:
    path = os.path.join(CONF_DIR, f"{name}.yaml")
    if not os.path.exists(path):
        names = ", ".join(workload_names())
        raise KeyError(f"unknown workload {name!r}; valid names: {names}")
    return OmegaConf.to_container(compose_yaml(name, Path(CONF_DIR)), resolve=True)


def workload_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(CONF_DIR) if f.endswith(".yaml"))


def meta_model(name: str):
    import torch

    from algoperf_torch.workloads import get_workload_functions

    config = load_config(name)
    with torch.device("meta"):
        return get_workload_functions(config.impl).build_model(config)


def describe(name: str) -> dict[str, Any]:
    config = load_config(name)
    params = sum(p.numel() for p in meta_model(name).parameters())
    return {
        "name": name,
        "params": params,
        "target_metric": config.target_metric,
        "target_minimize": config.target_minimize,
        "target_inclusive": config.target_inclusive,
        "validation_target": config.validation_target,
        "test_target": config.test_target,
        "max_runtime": config.max_runtime,
        "base": config.base,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m algoperf_torch.workloads", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--shapes", metavar="NAME", help="print NAME's parameter names and shapes")
    args = parser.parse_args(argv)
    try:
        if args.shapes:
            shapes = [[k, list(p.shape)] for k, p in meta_model(args.shapes).named_parameters()]
            if args.json:
                print(json.dumps(shapes))
            else:
                for k, shape in shapes:
                    print(f"{k:60s} {tuple(shape)}")
            return 0
        rows = [describe(n) for n in workload_names()]
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(
        f"{'workload':34s} {'params':>13s}  {'metric':24s} {'validation':>11s} {'test':>9s} {'budget s':>9s}"
    )
    for r in rows:
        op = ("<" if r["target_minimize"] else ">") + ("=" if r["target_inclusive"] else "")
        test = "-" if r["test_target"] is None else f"{r['test_target']}"
        print(
            f"{r['name']:34s} {r['params']:>13,d}  {r['target_metric'] + ' ' + op:24s} "
            f"{r['validation_target']:>11} {test:>9} {r['max_runtime']:>9,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
