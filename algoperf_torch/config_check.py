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
        keys |= _workload_fields()
    return tuple(sorted(keys))


@cache
def _workload_fields() -> frozenset[str]:
    from dataclasses import fields

    from algoperf_torch.spec import WorkloadConfig

    return frozenset(f.name for f in fields(WorkloadConfig))


def _check_option(group: str, value: str) -> None:
    options = group_options(group)
    for choice in value.split(","):  # multirun sweeps list several
        if choice and choice not in options:
            raise ConfigError(f"unknown {group} {choice!r}; valid names: {', '.join(options)}")


def preprocess_overrides(args: list[str]) -> list[str]:
    """Validate ``key=value`` overrides and expand ``variant=``; return the args for Hydra.

    Arguments keep their order; flags (``-m``, ``--cfg job``), ``+``/``~`` additions and
    ``hydra…`` overrides pass through unchecked.
    """

    def is_plain(i: int, a: str) -> bool:
        # A flag's value ("--cfg job", "-p key") is not an override.
        after_flag = i > 0 and args[i - 1] in ("--cfg", "-c", "--package", "-p", "--info", "-i")
        return "=" in a and not a.startswith(("-", "+", "~", "hydra")) and not after_flag

    plain = {i: a.split("=", 1) for i, a in enumerate(args) if is_plain(i, a)}
    out = list(args)
    for i, (key, value) in plain.items():
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
            if head == "workload" and rest in _workload_fields():
                # A field with a dataclass default (``fast_kernels``, ``compile_cpu``) is in few
                # or no YAMLs, and Hydra refuses to override a key its config lacks: ``++``
                # sets it either way.
                out[i] = "++" + args[i]
    variant_at = [i for i, (k, _) in plain.items() if k == "variant"]
    if variant_at:
        variant = plain[variant_at[-1]][1]
        workload_at = [i for i, (k, _) in plain.items() if k == "workload"]
        if not workload_at:
            raise ConfigError(
                "variant=… needs workload=… (e.g. workload=imagenet_resnet variant=silu)"
            )
        base = plain[workload_at[-1]][1]
        known = [o[len(base) + 1 :] for o in group_options("workload") if o.startswith(base + "_")]
        if variant not in known:
            raise ConfigError(
                f"workload {base!r} has no variant {variant!r}; its variants: "
                f"{', '.join(known) or '(none)'}"
            )
        out[workload_at[-1]] = f"workload={base}_{variant}"
        out = [a for i, a in enumerate(out) if i not in variant_at]
    return out
