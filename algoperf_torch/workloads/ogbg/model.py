"""The OGBG Graph Network: embedders, message-passing steps (edge, node, global updates), decoder.

Same parameter names, registration order, initialisation and forward arithmetic as the reference
[algoperf/workloads/ogbg/ogbg_pytorch/models.py] (WORKLOADS.md §8.1), written so that it runs
under ``torch.compile`` with static shapes: every per-graph broadcast is a gather through an index
built with a known ``output_size`` (the padded node/edge budgets), never a data-dependent size.

    python -m pytest tests/test_ogbg_model.py
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.layers.init import lecun_normal_
from algoperf_torch.workloads.ogbg.graphs import GraphsTuple


@dataclass(frozen=True)
class GNNConfig:
    num_outputs: int = 128
    activation: str = "relu"  # relu | gelu (tanh approximation, as the reference) | silu
    latent_dim: int = 256
    hidden_dims: tuple[int, ...] = (256,)
    num_message_passing_steps: int = 5
    dropout_rate: float = 0.1  # used when forward() gets no rate [models.py DROPOUT_RATE]
    node_features: int = 9
    edge_features: int = 3


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU(approximate="tanh")
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown ogbg activation {name!r}; expected one of relu, gelu, silu")


class _Dropout(nn.Module):
    """Dropout whose rate is an argument of ``forward`` (it may change every step)."""

    def forward(self, x: torch.Tensor, p: float) -> torch.Tensor:
        return F.dropout(x, p, training=self.training)


class MLP(nn.Module):
    """Per hidden dim: ``dense_i`` -> ``norm_i`` (LayerNorm, eps 1e-6) -> activation -> dropout.

    Child names are the reference's ``_make_mlp`` ones (they name the parameters).
    """

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...], activation: str) -> None:
        super().__init__()
        self.depth = len(hidden_dims)
        for i, dim in enumerate(hidden_dims):
            self.add_module(f"dense_{i}", nn.Linear(in_dim, dim))
            self.add_module(f"norm_{i}", nn.LayerNorm(dim, eps=1e-6))
            self.add_module(f"activation_fn_{i}", _activation(activation))
            self.add_module(f"dropout_{i}", _Dropout())
            in_dim = dim

    def forward(self, x: torch.Tensor, dropout_rate: float) -> torch.Tensor:
        for i in range(self.depth):
            x = getattr(self, f"norm_{i}")(getattr(self, f"dense_{i}")(x))
            x = getattr(self, f"dropout_{i}")(getattr(self, f"activation_fn_{i}")(x), dropout_rate)
        return x


def _segment_sum(src: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``out[index[j]] += src[j]``: the reference's ``scatter_sum`` (same ``scatter_add_`` call,
    so the same summation order and bits on CPU)."""
    out = src.new_zeros((num_segments, src.shape[1]))
    return out.scatter_add_(0, index[:, None].expand_as(src), src)


class GraphNetwork(nn.Module):
    """One message-passing step (Battaglia et al. 2018, Algorithm 1), node update aggregating the
    sent and received edges separately [models.py ``GraphNetwork``]."""

    def __init__(self, update_edge_fn: MLP, update_node_fn: MLP, update_global_fn: MLP) -> None:
        super().__init__()
        self.update_edge_fn = update_edge_fn
        self.update_node_fn = update_node_fn
        self.update_global_fn = update_global_fn

    def forward(
        self,
        nodes: torch.Tensor,  # [N, H]
        edges: torch.Tensor,  # [E, H]
        globals_: torch.Tensor,  # [G, H]
        graph: GraphsTuple,
        node_graph: torch.Tensor,  # [N] graph id of each node
        edge_graph: torch.Tensor,  # [E] graph id of each edge
        dropout_rate: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        senders, receivers = graph.senders, graph.receivers
        n_nodes, n_graphs = nodes.shape[0], globals_.shape[0]
        edge_in = torch.cat([edges, nodes[senders], nodes[receivers], globals_[edge_graph]], dim=-1)
        edges = self.update_edge_fn(edge_in, dropout_rate)  # [E, H]
        node_in = torch.cat(
            [
                nodes,
                _segment_sum(edges, senders, n_nodes),
                _segment_sum(edges, receivers, n_nodes),
                globals_[node_graph],
            ],
            dim=-1,
        )
        nodes = self.update_node_fn(node_in, dropout_rate)  # [N, H]
        global_in = torch.cat(
            [
                _segment_sum(nodes, node_graph, n_graphs),
                _segment_sum(edges, edge_graph, n_graphs),
                globals_,
            ],
            dim=-1,
        )
        globals_ = self.update_global_fn(global_in, dropout_rate)  # [G, H]
        return nodes, edges, globals_


class GNN(nn.Module):
    """Graph network on molecules; the prediction is read from the globals [models.py ``GNN``].

    Input: a ``GraphsTuple`` (jraph's fields; ``globals`` is ignored and replaced by zeros, as the
    reference does). Output: logits ``[n_graph, num_outputs]``, the padding graphs included.
    """

    def __init__(self, config: GNNConfig) -> None:
        super().__init__()
        self.config = c = config
        # Constructed in the reference's order: each nn.Linear draws its torch-default init here,
        # then the loop at the end re-initialises every Linear in module order (torch-RNG order).
        self.node_embedder = nn.Linear(c.node_features, c.latent_dim)
        self.edge_embedder = nn.Linear(c.edge_features, c.latent_dim)
        hidden = c.hidden_dims[-1]
        steps = []
        for step in range(c.num_message_passing_steps):
            if step == 0:
                edge_in = 3 * c.latent_dim + c.num_outputs
                node_in = c.latent_dim + 2 * hidden + c.num_outputs
                global_in = 2 * hidden + c.num_outputs
            else:
                edge_in, node_in, global_in = 4 * hidden, 4 * hidden, 3 * hidden
            steps.append(
                GraphNetwork(
                    MLP(edge_in, c.hidden_dims, c.activation),
                    MLP(node_in, c.hidden_dims, c.activation),
                    MLP(global_in, c.hidden_dims, c.activation),
                )
            )
        self.graph_network = nn.ModuleList(steps)
        self.decoder = nn.Linear(hidden, c.num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                lecun_normal_(m)

    def forward(self, graph: GraphsTuple, dropout_rate: float | None = None) -> torch.Tensor:
        rate = self.config.dropout_rate if dropout_rate is None else dropout_rate
        n_node, n_edge = graph.n_node, graph.n_edge
        n_graphs = n_node.shape[0]
        graph_ids = torch.arange(n_graphs, device=n_node.device)
        # Graph id of every node/edge; output_size keeps the shape static under torch.compile.
        node_graph = torch.repeat_interleave(graph_ids, n_node, output_size=graph.nodes.shape[0])
        edge_graph = torch.repeat_interleave(graph_ids, n_edge, output_size=graph.edges.shape[0])
        globals_ = graph.nodes.new_zeros((n_graphs, self.config.num_outputs))  # [G, 128]
        nodes = self.node_embedder(graph.nodes)  # [N, latent]
        edges = self.edge_embedder(graph.edges)  # [E, latent]
        for step in self.graph_network:
            nodes, edges, globals_ = step(
                nodes, edges, globals_, graph, node_graph, edge_graph, rate
            )
        return self.decoder(globals_)  # [G, num_outputs]
