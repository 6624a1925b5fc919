"""ImageNet ResNet-50 workload and its variants (WORKLOADS.md §4)."""
