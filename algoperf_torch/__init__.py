"""algoperf-torch: the AlgoPerf Training-Algorithms benchmark in pure PyTorch.

python -m algoperf_torch --help
"""

__version__ = "0.1.0"
