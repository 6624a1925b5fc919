"""ogbg-molpcba batches: graphs packed and padded exactly as jraph's ``dynamically_batch``.

Reads the arrays ``python -m algoperf_torch.data ogbg`` prepares (memory-mapped). Each molecule
becomes a graph with bidirectional edges in the reference's order (all bonds forward, then all
reversed, features duplicated) [ogbg/input_pipeline.py ``_to_jraph``]; missing labels become 0
with weight 0. Graphs are taken greedily in stream order while the batch keeps <= b graphs,
<= 26 b nodes and <= 56 b edges (the graph that does not fit starts the next batch), then padded
to exactly 26 b + 1 nodes, 56 b edges and b + 1 graphs: one padding graph holds all padding nodes
and edges (the edges on its first node), zero-size graphs fill the rest, and the graph mask is
jraph's ``get_graph_padding_mask`` [jraph ``dynamically_batch``, ``pad_with_graphs``;
WORKLOADS.md §8.4]. Every batch therefore has the same shapes for a given b.

Train: one endless stream of per-epoch uniform permutations (seeded), packed into per-rank
batches of b = global batch / world size; batch i of the stream goes to rank i mod world_size,
the layout of the reference's per-device shards. Eval: this rank's contiguous share of the split,
each graph once; ``graph_index`` gives each graph's position in the split (-1: padding) for the
metric. ``eval_train`` is a fixed seeded subset of the training graphs.

    python -m pytest tests/test_ogbg_data.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from algoperf_torch.pipelines.state import (
    Resumable,
    check_fingerprint,
    eval_shard,
    fingerprint,
    to_device,
)
from algoperf_torch.spec import Batch, DataRequest, WorkloadConfig
from algoperf_torch.workloads.ogbg.graphs import GraphsTuple

FOLDER = "ogbg_molpcba"
SPLIT_FILES = {"train": "train", "eval_train": "train", "validation": "valid", "test": "test"}
# Value ranges of OGB's atom and bond codes [ogb/utils/features.py]: synthetic graphs draw them.
ATOM_VOCAB = (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_VOCAB = (5, 6, 2)


@dataclass(frozen=True)
class Molecules:
    """Per-graph arrays, concatenated: graph g's nodes are ``node_feat[node_offset[g]:][:n]``."""

    num_nodes: np.ndarray  # [G]
    num_edges: np.ndarray  # [G] bonds (one direction)
    node_feat: np.ndarray  # [sum nodes, 9]
    edge_feat: np.ndarray  # [sum bonds, 3]
    edge_index: np.ndarray  # [sum bonds, 2] graph-local (sender, receiver)
    labels: np.ndarray  # [G, T] int8: 1, 0, -1 missing

    @cached_property
    def node_offset(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.num_nodes, dtype=np.int64)[:-1]])

    @cached_property
    def edge_offset(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.num_edges, dtype=np.int64)[:-1]])


def load_molecules(data_dir: str) -> tuple[Molecules, dict[str, np.ndarray]]:
    """The prepared dataset (memory-mapped) and its split graph ids; a clear error if absent."""
    folder = os.path.join(os.path.expanduser(data_dir), FOLDER)
    manifest = os.path.join(folder, "manifest.json")
    if not os.path.isfile(manifest):
        raise FileNotFoundError(
            f"{manifest} not found: ogbg-molpcba is not prepared there. Run: "
            f"python -m algoperf_torch.data ogbg --data-dir {data_dir}"
        )
    with open(manifest) as f:
        version = json.load(f).get("format_version")
    if version != 1:
        raise ValueError(f"{manifest}: format_version {version!r}; this code reads version 1")
    load = lambda name: np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r")  # noqa: E731
    mol = Molecules(
        *(
            load(n)
            for n in ("num_nodes", "num_edges", "node_feat", "edge_feat", "edge_index", "labels")
        )
    )
    splits = {s: np.asarray(load(f"split_{s}")) for s in ("train", "valid", "test")}
    return mol, splits


def budgets(b: int, data: Mapping[str, Any]) -> tuple[int, int, int]:
    """(nodes, edges, graphs) of a padded batch for b graphs [input_pipeline.py]."""
    return int(data["avg_nodes_per_graph"]) * b + 1, int(data["avg_edges_per_graph"]) * b, b + 1


def graphs_that_fit(nodes: np.ndarray, edges: np.ndarray, limits: tuple[int, int, int]) -> int:
    """How many graphs from the front of the window jraph puts into one batch.

    ``nodes``/``edges``: sizes of the next graphs of the stream (at most b of them). jraph adds
    graphs while the batch holds <= n_node - 1 nodes, <= n_edge edges, <= n_graph - 1 graphs.
    """
    max_nodes, max_edges, max_graphs = limits[0] - 1, limits[1], limits[2] - 1
    k = min(
        len(nodes),
        max_graphs,
        int(np.searchsorted(np.cumsum(nodes), max_nodes, side="right")),
        int(np.searchsorted(np.cumsum(edges), max_edges, side="right")),
    )
    if k == 0 and len(nodes):
        raise RuntimeError(
            f"a graph with {nodes[0]} nodes and {edges[0]} edges is bigger than the batch budget "
            f"({max_nodes} nodes, {max_edges} edges); use a larger batch size"
        )
    return k


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each (s, n)."""
    first = np.cumsum(lengths) - lengths
    return np.arange(lengths.sum(), dtype=np.int64) + np.repeat(starts - first, lengths)


def build_batch(
    mol: Molecules,
    ids: np.ndarray,
    limits: tuple[int, int, int],
    graph_index: np.ndarray | None = None,
) -> Batch:
    """Graphs ``ids`` of ``mol`` as one padded batch (``graph_index``: their split positions)."""
    max_nodes, max_edges, max_graphs = limits
    nn_ = mol.num_nodes[ids].astype(np.int64)
    nb = mol.num_edges[ids].astype(np.int64)
    node_idx = _ranges(mol.node_offset[ids], nn_)
    # Directed edges of graph g: its bonds forward, then the same bonds reversed.
    directed = 2 * nb
    local = np.arange(directed.sum(), dtype=np.int64) - np.repeat(
        np.cumsum(directed) - directed, directed
    )
    per_graph_bonds = np.repeat(nb, directed)
    bond = np.repeat(mol.edge_offset[ids], directed) + local % np.maximum(per_graph_bonds, 1)
    reverse = local >= per_graph_bonds
    pairs = np.asarray(mol.edge_index[bond], dtype=np.int64).reshape(-1, 2)
    base = np.repeat(np.cumsum(nn_) - nn_, directed)
    senders = np.where(reverse, pairs[:, 1], pairs[:, 0]) + base
    receivers = np.where(reverse, pairs[:, 0], pairs[:, 1]) + base
    n_real_nodes, n_real_edges, n_graphs = int(nn_.sum()), int(directed.sum()), len(ids)
    pad_nodes, pad_edges = max_nodes - n_real_nodes, max_edges - n_real_edges
    if pad_nodes <= 0 or pad_edges < 0 or n_graphs >= max_graphs:
        raise RuntimeError(f"{n_graphs} graphs do not fit the padded sizes {limits}")

    nodes = np.zeros((max_nodes, mol.node_feat.shape[1]), np.float32)
    nodes[:n_real_nodes] = mol.node_feat[node_idx]
    edges = np.zeros((max_edges, mol.edge_feat.shape[1]), np.float32)
    edges[:n_real_edges] = mol.edge_feat[bond]
    # Padding edges connect the first padding node to itself [jraph pad_with_graphs].
    send = np.full(max_edges, n_real_nodes, np.int64)
    recv = np.full(max_edges, n_real_nodes, np.int64)
    send[:n_real_edges], recv[:n_real_edges] = senders, receivers
    n_node = np.zeros(max_graphs, np.int64)
    n_edge = np.zeros(max_graphs, np.int64)
    n_node[:n_graphs], n_edge[:n_graphs] = nn_, directed
    n_node[n_graphs], n_edge[n_graphs] = pad_nodes, pad_edges
    real = graph_padding_mask(n_node)

    codes = np.zeros((max_graphs, mol.labels.shape[1]), np.int8)
    codes[:n_graphs] = mol.labels[ids]
    weights = (codes >= 0) & real[:, None]  # missing labels (-1) and padding graphs: weight 0
    targets = np.where(weights, codes, 0).astype(np.float32)
    t = torch.from_numpy
    graph = GraphsTuple(
        nodes=t(nodes),
        edges=t(edges),
        receivers=t(recv),
        senders=t(send),
        globals=torch.zeros(max_graphs, 0),
        n_node=t(n_node),
        n_edge=t(n_edge),
    )
    batch = {"inputs": graph, "targets": t(targets), "weights": t(weights)}
    if graph_index is not None:
        index = np.full(max_graphs, -1, np.int64)
        index[:n_graphs] = graph_index
        batch["graph_index"] = t(index)
    return batch


def graph_padding_mask(n_node: np.ndarray) -> np.ndarray:
    """jraph's ``get_graph_padding_mask``: the trailing graphs with 0 nodes, plus one, are padding."""
    trailing_empty = int(np.argmin(n_node[::-1] == 0))
    return np.arange(len(n_node)) < len(n_node) - trailing_empty - 1


class TrainGraphBatches(Resumable):
    """Endless shuffled batches; this rank's batches of the one packed stream (see module doc)."""

    def __init__(self, mol: Molecules, ids: np.ndarray, request: DataRequest, limits) -> None:
        self.mol, self.ids, self.request, self.limits = mol, ids, request, limits
        self.b = limits[2] - 1
        self._gen = torch.Generator().manual_seed(request.seed)
        self._fingerprint = fingerprint("ogbg_train", request, num_examples=len(ids))
        self._epochs: list[tuple[torch.Tensor, np.ndarray]] = []  # (generator state, order)
        self.epoch, self.cursor, self.batch_index = 0, 0, 0
        self._draw()

    def _draw(self) -> None:
        state = self._gen.get_state()
        order = torch.randperm(len(self.ids), generator=self._gen).numpy()
        self._epochs.append((state, self.ids[order]))

    def _window(self) -> np.ndarray:
        """The next (up to) b graph ids of the stream, drawing further epochs when needed."""
        parts, i = [self._epochs[0][1][self.cursor : self.cursor + self.b]], 0
        need = self.b - len(parts[0])
        while need > 0:
            i += 1
            if len(self._epochs) <= i:
                self._draw()
            parts.append(self._epochs[i][1][:need])
            need -= len(parts[-1])
        return np.concatenate(parts)

    def _advance(self, k: int) -> None:
        self.cursor += k
        self.batch_index += 1
        while self.cursor >= len(self._epochs[0][1]):
            self.cursor -= len(self._epochs[0][1])
            self.epoch += 1
            self._epochs.pop(0)
            if not self._epochs:
                self._draw()

    def __next__(self) -> Batch:
        rank, world = self.request.rank, self.request.world_size
        while True:
            window = self._window()
            k = graphs_that_fit(
                self.mol.num_nodes[window], 2 * self.mol.num_edges[window], self.limits
            )
            mine = self.batch_index % world == rank
            self._advance(k)
            if mine:
                return to_device(
                    build_batch(self.mol, window[:k], self.limits), self.request.device
                )

    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": dict(self._fingerprint),
            "epoch": self.epoch,
            "cursor": self.cursor,
            "batch_index": self.batch_index,
            "epoch_start_state": self._epochs[0][0].clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self._gen.set_state(state["epoch_start_state"])
        self._epochs = []
        self._draw()
        self.epoch = int(state["epoch"])
        self.cursor, self.batch_index = int(state["cursor"]), int(state["batch_index"])


class EvalGraphBatches(Resumable):
    """This rank's contiguous share of the split's graphs, packed in order, each graph once."""

    def __init__(self, mol: Molecules, ids: np.ndarray, request: DataRequest, limits) -> None:
        num = len(ids) if request.num_examples is None else request.num_examples
        if num > len(ids):
            raise ValueError(f"ogbg {request.split}: {num} graphs requested, {len(ids)} available")
        self.mol, self.ids, self.request, self.limits = mol, ids, request, limits
        self.shard = eval_shard(num, request.rank, request.world_size)
        self.next_start = self.shard.start
        self._fingerprint = fingerprint("ogbg_eval", request, num_examples=num)

    def __next__(self) -> Batch:
        start = self.next_start
        if start >= self.shard.stop:
            raise StopIteration
        window = self.ids[start : min(start + self.limits[2] - 1, self.shard.stop)]
        k = graphs_that_fit(self.mol.num_nodes[window], 2 * self.mol.num_edges[window], self.limits)
        self.next_start = start + k
        batch = build_batch(self.mol, window[:k], self.limits, np.arange(start, start + k))
        return to_device(batch, self.request.device)

    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": dict(self._fingerprint), "next_start": self.next_start}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_fingerprint(state, self._fingerprint)
        self.next_start = int(state["next_start"])


def eval_train_ids(train_ids: np.ndarray, num_examples: int, seed: int) -> np.ndarray:
    """A fixed seeded subset of the training graphs for ``eval_train``."""
    gen = torch.Generator().manual_seed(seed)
    return train_ids[torch.randperm(len(train_ids), generator=gen)[:num_examples].numpy()]


def input_iterator(config: WorkloadConfig, request: DataRequest) -> Resumable:
    mol, splits = load_molecules(request.data_dir)
    limits = budgets(request.batch_size, config.data)
    ids = splits[SPLIT_FILES[request.split]]
    if request.split == "train":
        return TrainGraphBatches(mol, ids, request, limits)
    if request.split == "eval_train":
        n = len(ids) if request.num_examples is None else min(request.num_examples, len(ids))
        ids = eval_train_ids(ids, n, request.seed)
    return EvalGraphBatches(mol, ids, request, limits)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """b random molecules of OGB's code ranges (<= 26 atoms, <= 28 bonds each), padded as real."""
    b = batch_size
    num_nodes = torch.randint(1, 27, (b,), generator=gen).numpy().astype(np.int32)
    num_edges = torch.randint(0, 29, (b,), generator=gen).numpy().astype(np.int32)
    total_nodes, total_bonds = int(num_nodes.sum()), int(num_edges.sum())
    node_feat = np.stack(
        [torch.randint(0, v, (total_nodes,), generator=gen).numpy() for v in ATOM_VOCAB], 1
    )
    edge_feat = np.stack(
        [torch.randint(0, v, (total_bonds,), generator=gen).numpy() for v in BOND_VOCAB], 1
    )
    graph_of_bond = np.repeat(np.arange(b), num_edges)
    limit = torch.from_numpy(num_nodes[graph_of_bond].astype(np.float64))
    edge_index = torch.rand(total_bonds, 2, generator=gen, dtype=torch.float64) * limit[:, None]
    tasks = int(config.model["num_outputs"])
    # About molpcba's label statistics: most entries missing, few positives.
    u = torch.rand(b, tasks, generator=gen)
    labels = torch.where(u < 0.5, -1, (u > 0.985).to(torch.int64)).numpy().astype(np.int8)
    mol = Molecules(num_nodes, num_edges, node_feat, edge_feat, edge_index.long().numpy(), labels)
    return build_batch(mol, np.arange(b), budgets(b, config.data))
