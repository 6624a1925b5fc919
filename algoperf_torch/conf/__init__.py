"""Hydra configs (YAML); this file only makes the folder importable for Hydra."""
