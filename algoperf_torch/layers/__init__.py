"""Shared ``nn`` building blocks, one concept per file; nothing here depends on ``workloads/``."""
