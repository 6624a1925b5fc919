"""fastMRI knee single-coil U-Net workload and its variants (WORKLOADS.md §3)."""
