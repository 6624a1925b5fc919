"""OGBG-molpcba graph network workload and its variants (WORKLOADS.md §8)."""
