"""Merge a YAML over the files its ``defaults`` list names, outside Hydra.

Workload YAMLs extend their base through Hydra's defaults list (a variant names its base). The
workload listing and scoring read those files without composing a whole Hydra config; this is
the one place that resolves such a chain.

    python -m algoperf_torch.workloads
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def defaults_entries(raw: DictConfig) -> list[str]:
    """The config names of a defaults list (``workload/`` prefixes and ``@package`` dropped)."""
    names = []
    for entry in raw.get("defaults") or []:
        if isinstance(entry, str):
            name = entry.split("@", 1)[0].strip()
            if name.startswith("/workload/") or name.startswith("workload/"):
                name = name.split("workload/", 1)[1]
            names.append(name)
    return names


def compose_yaml(
    name: str, folder: Path, missing_ok: bool = False, chain: tuple[str, ...] = ()
) -> DictConfig:
    """``folder/name.yaml`` merged over its defaults, in defaults-list order (``_self_`` last
    unless placed). A cycle is an error; so is a missing default unless ``missing_ok``."""
    if name in chain:
        raise ValueError(f"defaults cycle {' -> '.join((*chain, name))}")
    raw = OmegaConf.load(folder / f"{name}.yaml")
    own = OmegaConf.masked_copy(raw, [k for k in raw if k != "defaults"])
    entries = defaults_entries(raw)
    if "_self_" not in entries:
        entries.append("_self_")
    parts: list[DictConfig] = []
    for entry in entries:
        if entry == "_self_":
            parts.append(own)
        elif (folder / f"{entry}.yaml").is_file():
            parts.append(compose_yaml(entry, folder, missing_ok, (*chain, name)))
        elif not missing_ok:
            raise ValueError(
                f"{folder / name}.yaml: its defaults name {entry!r}, which has no YAML"
            )
    return OmegaConf.merge(*parts)
