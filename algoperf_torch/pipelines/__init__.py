"""Runtime input pipelines shared by the workloads, and the resumable-iterator contract.

Dataset *setup* commands (download, preprocess) live in ``algoperf_torch/data``; what reads the
prepared files at run time lives beside each workload (``workloads/<name>/data.py``) and, for
the pieces several workloads share, here:

- ``state``: the contract every pipeline follows (``spec.StatefulIterator``) and its helpers.
- ``in_memory``: shuffled train batches and sharded eval batches of tensors held in memory.
- ``synthetic``: batches of a workload's real shapes for ``data=synthetic``.
"""
