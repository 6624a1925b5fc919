"""Criteo 1TB DLRM-small workload and its variants (WORKLOADS.md §2)."""
