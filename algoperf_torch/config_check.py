"""Command-line checks before Hydra composes: unknown groups, options and keys fail fast.

Hydra itself rejects an unknown key without saying which keys exist; this check names the valid
ones. It also maps ``workload=W variant=V`` to the reference name ``workload=W_V``.

    python -m algoperf_torch workload=nosuch      # exits 2, listing the valid workloads
"""

from __future__ import annotations

import os
from functools import cache

from omegaconf import OmegaConf

CONF_DIR = os.path.join(os.path.dirname(__file__), "conf")
GROUPS = ("workload", "optimizer", "tuning", "data", "logger")


class ConfigError(ValueError):
    """A bad command-line override or configuration value; the message lists what is valid."""


@cache
def group_options(group: str) -> tuple[str, ...]:
    folder = os.path.join(CONF_DIR, group)
    return tuple(sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")))


@cache
def _top_level_keys() -> tuple[str, ...]:
    primary = OmegaConf.load(os.path.join(CONF_DIR, "config.yaml"))
    keys = {k for k in primary if k not in ("defaults", "hydra")}
    return tuple(sorted(keys | set(GROUPS) | {"hydra", "variant"}))


@cache
def _group_keys(group: str) -> tuple[str, ...]:
    keys: set[str] = set()
    for option in group_options(group):
        node = OmegaConf.load(os.path.join(CONF_DIR, group, option + ".yaml"))
        keys |= {k for k in node if k != "defaults"}
    if group == "workload":
        from dataclasses import fields

        from algoperf_torch.spec import WorkloadConfig

        keys |= {f.name for f in fields(WorkloadConfig)}
    return tuple(sorted(keys))


def _check_option(group: str, value: str) -> None:
    options = group_options(group)
    for choice in value.split(","):  # multirun sweeps list several
        if choice and choice not in options:
            raise ConfigError(f"unknown {group} {choice!r}; valid names: {', '.join(options)}")


def preprocess_overrides(args: list[str]) -> list[str]:
    """Validate ``key=value`` overrides and expand ``variant=``; return the args for Hydra."""
    plain = [a for a in args if "=" in a and not a.startswith(("-", "+", "~", "hydra"))]
    flags = [a for a in args if a not in plain]
    pairs = [a.split("=", 1) for a in plain]
    values = dict(pairs)
    for key, value in pairs:
        head, _, rest = key.partition(".")
        if head not in _top_level_keys():
            raise ConfigError(
                f"unknown key {key!r}; valid top-level keys: {', '.join(_top_level_keys())} "
                "(prefix a new key with + to add it)"
            )
        if head in GROUPS and not rest:
            _check_option(head, value)
        elif head in GROUPS:
            sub = rest.split(".", 1)[0]
            if sub not in _group_keys(head):
                raise ConfigError(
                    f"unknown key {key!r}; valid keys of {head}: {', '.join(_group_keys(head))}"
                )
    if "variant" in values:
        variant = values.pop("variant")
        base = values.get("workload")
        if base is None:
            raise ConfigError("variant=… needs workload=… (e.g. workload=imagenet_resnet variant=silu)")
        known = [o[len(base) + 1 :] for o in group_options("workload") if o.startswith(base + "_")]
        if variant not in known:
            raise ConfigError(
                f"workload {base!r} has no variant {variant!r}; its variants: "
                f"{', '.join(known) or '(none)'}"
            )
        values["workload"] = f"{base}_{variant}"
    out = [f"{k}={v}" for k, v in values.items()]
    return flags + out
