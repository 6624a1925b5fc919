"""``GraphsTuple``: a batch of graphs under jraph's field names, holding torch tensors.

Published submissions read ``batch["inputs"]`` as a jraph ``GraphsTuple`` (the reference's PyTorch
workload feeds one built by jraph); this NamedTuple has the same fields in the same order, so
``nodes, edges, receivers, senders, globals, n_node, n_edge = graph`` and ``graph._replace(...)``
work as there, plus ``to()``/``pin_memory()`` so the shared device copy can move it.

    python -m pytest tests/test_ogbg_model.py
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class GraphsTuple(NamedTuple):
    """Concatenated graphs: ``nodes [N, F]``, ``edges [E, D]``, ids into ``nodes``, counts."""

    nodes: torch.Tensor
    edges: torch.Tensor
    receivers: torch.Tensor
    senders: torch.Tensor
    globals: torch.Tensor
    n_node: torch.Tensor
    n_edge: torch.Tensor

    def to(self, *args, **kwargs) -> GraphsTuple:
        return GraphsTuple(*(t.to(*args, **kwargs) for t in self))

    def pin_memory(self) -> GraphsTuple:
        return GraphsTuple(*(t.pin_memory() for t in self))
