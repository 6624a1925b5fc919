"""WMT Transformer workload and its variants (WORKLOADS.md §9)."""
