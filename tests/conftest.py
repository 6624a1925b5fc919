"""Shared test helpers: compose the real Hydra config and run a trial in-process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compose(overrides: list[str]):
    """The config ``python -m algoperf_torch <overrides>`` would run with."""
    return compose_many([overrides])[0]


def compose_many(override_lists: list[list[str]]) -> list:
    """Several compositions under one Hydra initialisation (much faster than one each)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="algoperf_torch.conf", version_base=None):
        return [hydra_compose(config_name="config", overrides=o) for o in override_lists]


def run_trial(tmp_path, overrides: list[str]) -> dict:
    """Run one trial in-process; logs go under ``tmp_path``. Returns the trial summary."""
    from algoperf_torch.__main__ import run

    cfg = compose([f"experiment_dir={tmp_path}", "progress=off", *overrides])
    return run(cfg)


def run_cli(
    args: list[str], env: dict | None = None, timeout: float = 300, module: str = "algoperf_torch"
):
    """``python -m <module> <args>`` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
    )


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    # Tests share 2 cores; one intra-op thread keeps timing-insensitive tests fast and stable.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
