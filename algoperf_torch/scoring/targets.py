"""Workload targets for scoring, read from the workload YAMLs (the one source of truth).

    python -c "from algoperf_torch.scoring.targets import main; main()"   # the table read from YAML

Each `algoperf_torch/conf/workload/<name>.yaml` gives `name`, `target_metric`,
`target_minimize`, `validation_target` (required for scoring) and `test_target`,
`max_runtime`, `base`, and the v0.5 values where they differ: `v05_max_runtime`,
`v05_validation_target`, `v05_test_target` (optional). A variant's `defaults:` list names its base
YAML; the chain is merged with OmegaConf in list order, the file itself last unless `_self_`
says otherwise (Hydra >= 1.1 semantics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from algoperf_torch.yaml_compose import compose_yaml

WORKLOAD_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "workload"
REQUIRED_KEYS = ("target_metric", "target_minimize", "validation_target")


@dataclass(frozen=True)
class WorkloadTarget:
    """What scoring needs to know about one workload."""

    name: str
    target_metric: str  # e.g. "accuracy"; the scored column is "validation/<target_metric>"
    target_minimize: bool
    validation_target: float
    test_target: float | None = None
    max_runtime: float | None = None  # seconds (v0.6)
    v05_max_runtime: float | None = None  # seconds, where v0.5 differed
    v05_validation_target: float | None = None  # where v0.5 differed
    v05_test_target: float | None = None
    base: str | None = None  # the base workload of a variant

    @property
    def validation_metric(self) -> str:
        """The CSV column compared with the target."""
        return f"validation/{self.target_metric}"

    def for_rules(self, rules: str) -> WorkloadTarget:
        """This workload's targets under `rules` (v0.5 swaps in its values where they differ)."""
        if rules != "v0.5":
            return self
        changes = {
            key: getattr(self, f"v05_{key}")
            for key in ("validation_target", "test_target", "max_runtime")
            if getattr(self, f"v05_{key}") is not None
        }
        return replace(self, **changes)

    def budget(self, rules: str, self_tuning: bool) -> float | None:
        """The runtime budget under `rules` (v0.6 | v0.5), ×1.5 (v0.6) or ×3 (v0.5) self-tuning."""
        runtime = (
            self.v05_max_runtime if rules == "v0.5" and self.v05_max_runtime else self.max_runtime
        )
        if runtime is None:
            return None
        return runtime * ((3.0 if rules == "v0.5" else 1.5) if self_tuning else 1.0)


class TargetsError(ValueError):
    """A workload YAML that does not give what scoring needs; names the file and the keys."""


def _number(value: Any, key: str, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TargetsError(f"{path}: {key!r} is {value!r}; accepted: a number")
    return float(value)


def target_from_config(cfg: dict[str, Any], path: Path) -> WorkloadTarget:
    """Build a `WorkloadTarget` from a composed workload config.

    Args:
        cfg: the composed YAML as a plain dict.
        path: the YAML (for error messages).

    Raises:
        TargetsError: a required key is missing or has the wrong type.
    """
    missing = [k for k in REQUIRED_KEYS if cfg.get(k) is None]
    if missing:
        raise TargetsError(f"{path}: missing keys {missing} needed for scoring")
    if not isinstance(cfg["target_minimize"], bool):
        raise TargetsError(
            f"{path}: 'target_minimize' is {cfg['target_minimize']!r}; accepted: true|false"
        )
    if not isinstance(cfg["target_metric"], str) or not cfg["target_metric"]:
        raise TargetsError(
            f"{path}: 'target_metric' is {cfg['target_metric']!r}; accepted: a metric name"
        )
    return WorkloadTarget(
        name=str(cfg.get("name") or path.stem),
        target_metric=cfg["target_metric"],
        target_minimize=cfg["target_minimize"],
        validation_target=_number(cfg["validation_target"], "validation_target", path),
        test_target=_number(cfg.get("test_target"), "test_target", path),
        max_runtime=_number(cfg.get("max_runtime"), "max_runtime", path),
        v05_max_runtime=_number(cfg.get("v05_max_runtime"), "v05_max_runtime", path),
        v05_validation_target=_number(
            cfg.get("v05_validation_target"), "v05_validation_target", path
        ),
        v05_test_target=_number(cfg.get("v05_test_target"), "v05_test_target", path),
        base=cfg.get("base") or None,
    )


def load_workload_targets(
    conf_dir: Path | str | None = None,
) -> tuple[dict[str, WorkloadTarget], dict[str, str]]:
    """Read the targets of every workload YAML.

    Args:
        conf_dir: folder of workload YAMLs (default: `algoperf_torch/conf/workload/`, where
            every reference workload and variant has its YAML).

    Returns:
        (`{workload name: WorkloadTarget}`, `{workload name: why it has no target}`); the second
        dict lets the caller fail only when a workload it needs is incomplete.
    """
    dirs = [Path(conf_dir) if conf_dir is not None else WORKLOAD_CONF_DIR]
    targets, problems = {}, {}
    paths = [(folder, path) for folder in dirs for path in sorted(folder.glob("*.yaml"))]
    for folder, path in paths:
        if path.stem in targets or path.stem in problems:
            continue
        try:
            cfg = OmegaConf.to_container(
                compose_yaml(path.stem, folder, missing_ok=True), resolve=False
            )
            target = target_from_config(cfg, path)
        except Exception as err:  # noqa: BLE001 - any broken YAML is reported, not fatal here
            problems[path.stem] = str(err) if isinstance(err, TargetsError) else f"{path}: {err}"
            continue
        targets[target.name] = target
    return targets, problems


def main() -> None:
    """Print the targets table."""
    targets, problems = load_workload_targets()
    for t in targets.values():
        direction = "<=" if t.target_minimize else ">="
        print(
            f"{t.name:40s} {t.validation_metric:32s} {direction} {t.validation_target:<10g} "
            f"budget {t.max_runtime} base {t.base}"
        )
    for name, why in problems.items():
        print(f"{name:40s} (no target: {why})")


if __name__ == "__main__":
    main()
