"""Experiment tracking with Weights & Biases (``logger=wandb``); imported only when chosen.

Logs the resolved config at start, each eval's metrics (step = global step) and the final
summary (time to target, reached or not). ``WANDB_MODE=offline`` works without a network.

    WANDB_MODE=offline python -m algoperf_torch logger=wandb
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WandbSettings:
    project: str = "algoperf-torch"
    entity: str | None = None
    mode: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()


class WandbRun:
    """A W&B run bound to one trial."""

    def __init__(
        self, settings: WandbSettings, name: str, config: Mapping[str, Any], trial_dir: str
    ) -> None:
        import wandb

        if settings.mode not in (None, "online", "offline", "disabled"):
            raise ValueError(
                f"logger.mode={settings.mode!r}; expected online, offline, disabled or null"
            )
        self._wandb = wandb
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            mode=settings.mode,
            group=settings.group,
            tags=list(settings.tags),
            name=name,
            config=dict(config),
            dir=trial_dir,
            reinit="finish_previous",
        )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def finish(self, summary: Mapping[str, Any]) -> None:
        for key, value in summary.items():
            self.run.summary[key] = value
        self.run.finish()
