"""ogbg-molpcba setup from a tiny raw ``pcba.zip`` and the pipeline against jraph's rules.

The expected batches are built here by a plain re-statement of jraph's ``dynamically_batch`` and
``pad_with_graphs`` and the reference's ``_to_jraph`` / ``_get_weights_by_nan_and_padding``.

    python -m pytest tests/test_ogbg_data.py
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ogbg_fixtures import tiny_dataset, write_pcba_zip

from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.ogbg import data

DATA = {"avg_nodes_per_graph": 26, "avg_edges_per_graph": 56}


class _Config:
    data = DATA
    model = {"num_outputs": 128}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ogbg")
    archives, graphs, splits = tiny_dataset(tmp)
    rc = data_main(
        [
            "ogbg",
            "--data-dir",
            str(tmp / "data"),
            "--archives-dir",
            str(archives),
            "--allow-partial",
        ]
    )
    assert rc == 0
    return str(tmp / "data"), graphs, splits


def request(data_dir, split, b, **kw) -> DataRequest:
    return DataRequest(split=split, data_dir=data_dir, batch_size=b, seed=kw.pop("seed", 0), **kw)


def test_setup_stores_the_raw_arrays(prepared):
    data_dir, graphs, splits = prepared
    mol, stored = data.load_molecules(data_dir)
    assert mol.node_feat.dtype == np.uint8 and mol.edge_index.dtype == np.int16
    for g, graph in enumerate(graphs):
        n0, e0 = mol.node_offset[g], mol.edge_offset[g]
        n, e = len(graph["node_feat"]), len(graph["edge_index"])
        assert (mol.num_nodes[g], mol.num_edges[g]) == (n, e)
        assert np.array_equal(mol.node_feat[n0 : n0 + n], graph["node_feat"])
        assert np.array_equal(mol.edge_index[e0 : e0 + e], graph["edge_index"])
        assert np.array_equal(mol.edge_feat[e0 : e0 + e], graph["edge_feat"])
        expected = np.where(np.isnan(graph["labels"]), -1, graph["labels"])
        assert np.array_equal(mol.labels[g], expected)
    for split in ("train", "valid", "test"):
        assert stored[split].tolist() == splits[split]


def test_setup_checks_official_counts_and_resumes(tmp_path, capsys):
    archives, _, _ = tiny_dataset(tmp_path, num_graphs=20, seed=3)
    args = ["ogbg", "--data-dir", str(tmp_path / "d"), "--archives-dir", str(archives)]
    assert data_main(args) == 1
    err = capsys.readouterr().err
    assert (
        "split train: 14 graphs, the official count is 350343" in err and "--allow-partial" in err
    )
    folder = tmp_path / "d" / "ogbg_molpcba"
    assert not (folder / "manifest.json").exists()  # the loader refuses an unfinished folder
    with pytest.raises(FileNotFoundError, match="python -m algoperf_torch.data ogbg"):
        data.load_molecules(str(tmp_path / "d"))
    assert data_main([*args, "--allow-partial"]) == 0
    assert "warning: split train: 14 graphs" in capsys.readouterr().out
    # Interrupted run: one array missing, a leftover temporary file. A re-run writes only it.
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    os.remove(folder / "labels.npy")
    (folder / ".labels.npy.x.part").write_bytes(b"half")
    assert data_main([*args, "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "writing labels.npy" in out and "writing node_feat.npy" not in out
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    assert all(after[k] == v for k, v in before.items() if k != "labels.npy")


def test_setup_reports_bad_archives(tmp_path, capsys):
    bad = tmp_path / "a"
    bad.mkdir()
    (bad / "pcba.zip").write_bytes(b"PK\x03\x04 truncated")
    args = ["ogbg", "--data-dir", str(tmp_path / "d"), "--archives-dir", str(bad)]
    assert data_main(args) == 1
    assert "pcba.zip is not a readable zip archive" in capsys.readouterr().err
    assert (
        data_main(["ogbg", "--data-dir", str(tmp_path / "d"), "--archives-dir", "/nonexistent"])
        == 1
    )
    assert "pcba.zip not found" in capsys.readouterr().err
    # An edge naming a node outside its graph.
    graphs = [
        {
            "node_feat": np.zeros((2, 9), int),
            "edge_index": np.array([[0, 5]]),
            "edge_feat": np.zeros((1, 3), int),
            "labels": np.zeros(128),
        }
    ]
    write_pcba_zip(str(bad / "pcba.zip"), graphs, {"train": [0], "valid": [], "test": []})
    assert data_main([*args, "--allow-partial"]) == 1
    assert "edge.csv.gz names a node outside its graph" in capsys.readouterr().err


# ---- jraph's rules, re-stated -----------------------------------------------------------------
def to_jraph(graph: dict) -> dict:
    """[ogbg/input_pipeline.py ``_to_jraph``]: bonds forward, then reversed."""
    s, r = graph["edge_index"][:, 0], graph["edge_index"][:, 1]
    return {
        "nodes": graph["node_feat"].astype(np.float32),
        "edges": np.concatenate([graph["edge_feat"], graph["edge_feat"]]).astype(np.float32),
        "senders": np.concatenate([s, r]),
        "receivers": np.concatenate([r, s]),
        "labels": graph["labels"],
    }


def jraph_batches(graphs: list[dict], n_node: int, n_edge: int, n_graph: int):
    """[jraph ``dynamically_batch`` + ``pad_with_graphs``] and the reference's label weights."""
    batch, nodes, edges = [], 0, 0
    for g in graphs:
        gn, ge = len(g["nodes"]), len(g["senders"])
        if batch and (
            len(batch) + 1 > n_graph - 1 or nodes + gn > n_node - 1 or edges + ge > n_edge
        ):
            yield pad(batch, n_node, n_edge, n_graph)
            batch, nodes, edges = [], 0, 0
        batch.append(g)
        nodes, edges = nodes + gn, edges + ge
    if batch:
        yield pad(batch, n_node, n_edge, n_graph)


def pad(batch, n_node, n_edge, n_graph):
    offsets = np.cumsum([0] + [len(g["nodes"]) for g in batch])
    real_nodes, real_edges = offsets[-1], sum(len(g["senders"]) for g in batch)
    pad_n, pad_e, pad_g = n_node - real_nodes, n_edge - real_edges, n_graph - len(batch)
    senders = [g["senders"] + o for g, o in zip(batch, offsets)] + [
        np.zeros(pad_e, int) + real_nodes
    ]
    receivers = [g["receivers"] + o for g, o in zip(batch, offsets)] + [
        np.zeros(pad_e, int) + real_nodes
    ]
    n_nodes = np.array([len(g["nodes"]) for g in batch] + [pad_n] + [0] * (pad_g - 1))
    labels = np.array([g["labels"] for g in batch] + [np.zeros(128)] * pad_g)
    trailing = np.argmin(n_nodes[::-1] == 0)  # jraph get_graph_padding_mask
    real = np.arange(n_graph) < n_graph - trailing - 1
    weights = (1.0 - np.isnan(labels)) * real[:, None]
    return {
        "nodes": np.concatenate([g["nodes"] for g in batch] + [np.zeros((pad_n, 9))]),
        "edges": np.concatenate([g["edges"] for g in batch] + [np.zeros((pad_e, 3))]),
        "senders": np.concatenate(senders),
        "receivers": np.concatenate(receivers),
        "n_node": n_nodes,
        "n_edge": np.array([len(g["senders"]) for g in batch] + [pad_e] + [0] * (pad_g - 1)),
        "targets": np.nan_to_num(labels, nan=0.0),
        "weights": weights.astype(bool),
        "real": real,
    }


def assert_same(batch, expected):
    g = batch["inputs"]
    for key in ("nodes", "edges", "senders", "receivers", "n_node", "n_edge"):
        assert np.array_equal(getattr(g, key).numpy(), expected[key]), key
    assert np.array_equal(batch["targets"].numpy(), expected["targets"])
    assert np.array_equal(batch["weights"].numpy(), expected["weights"])


@pytest.fixture(scope="module")
def large_graphs(tmp_path_factory):
    """Graphs of up to 40 atoms and 40 bonds: the node and edge budgets of b = 2..3 cut batches."""
    tmp = tmp_path_factory.mktemp("ogbg_large")
    archives, graphs, splits = tiny_dataset(tmp, 60, seed=7, max_nodes=40, bonds_per_node=1)
    args = ["--data-dir", str(tmp / "data"), "--archives-dir", str(archives), "--allow-partial"]
    assert data_main(["ogbg", *args]) == 0
    return str(tmp / "data"), graphs, splits


@pytest.mark.parametrize("b", [1, 2, 3, 16])
@pytest.mark.parametrize("dataset", ["prepared", "large_graphs"])
def test_eval_batches_follow_jraph(request_fixture, dataset, b):
    data_dir, graphs, splits = request_fixture.getfixturevalue(dataset)
    if dataset == "large_graphs" and b == 1:
        pytest.skip(
            "a 40-atom graph exceeds the b = 1 budget (an error: test_budgets_cut_batches_by_nodes_and_edges)"
        )
    it = data.input_iterator(_Config, request(data_dir, "validation", b))
    got = list(it)
    expected = list(
        jraph_batches([to_jraph(graphs[i]) for i in splits["valid"]], 26 * b + 1, 56 * b, b + 1)
    )
    assert len(got) == len(expected)
    index = []
    for batch, exp in zip(got, expected):
        assert_same(batch, exp)
        real = batch["graph_index"] >= 0
        assert torch.equal(real, torch.from_numpy(exp["real"]))
        index += batch["graph_index"][real].tolist()
    assert index == list(range(len(splits["valid"])))
    if dataset == "large_graphs" and b < 16:
        counts = [int((bt["graph_index"] >= 0).sum()) for bt in got]
        assert len(got) > -(-len(splits["valid"]) // b)  # some batches cut by the budgets
        assert max(counts) <= b


@pytest.fixture
def request_fixture(request):
    return request


def test_budgets_cut_batches_by_nodes_and_edges():
    """Graphs of 30 nodes / 60 edges with b = 2 (budget 52 nodes, 112 edges): one per batch."""
    sizes = np.array([30, 30, 10, 10, 10])
    edges = np.array([60, 60, 0, 0, 100])
    limits = data.budgets(2, DATA)
    assert limits == (53, 112, 3)
    assert data.graphs_that_fit(sizes[:2], edges[:2], limits) == 1
    assert data.graphs_that_fit(sizes[2:4], edges[2:4], limits) == 2
    assert data.graphs_that_fit(sizes[3:5], edges[3:5], limits) == 2  # 100 edges <= 112
    assert data.graphs_that_fit(sizes[2:5], np.array([60, 60, 0]), limits) == 1  # 120 > 112
    with pytest.raises(RuntimeError, match="bigger than the batch budget"):
        data.graphs_that_fit(np.array([60]), np.array([0]), limits)


@pytest.mark.parametrize("world", [2, 3])
def test_eval_shards_cover_each_graph_once(prepared, world):
    data_dir, _, splits = prepared
    for split, n in (("validation", 6), ("test", 5), ("eval_train", 10)):
        seen = []
        for rank in range(world):
            it = data.input_iterator(
                _Config, request(data_dir, split, 2, rank=rank, world_size=world, num_examples=n)
            )
            for batch in it:
                idx = batch["graph_index"]
                seen += idx[idx >= 0].tolist()
        assert sorted(seen) == list(range(n)), split


def test_eval_train_is_a_fixed_subset_of_train(prepared):
    data_dir, graphs, splits = prepared
    ids = data.eval_train_ids(np.array(splits["train"]), 10, seed=0)
    assert set(ids) <= set(splits["train"]) and len(set(ids)) == 10
    assert np.array_equal(ids, data.eval_train_ids(np.array(splits["train"]), 10, seed=0))


def _take(it, n):
    return [next(it) for _ in range(n)]


def _labels(graph: dict) -> list[float]:
    return np.nan_to_num(graph["labels"], nan=0.0).tolist()


def test_train_ranks_split_the_single_stream(prepared):
    """Rank r of w gets batches r, r + w, ... of the stream one process packs with the same b."""
    data_dir, graphs, splits = prepared
    single = _take(data.input_iterator(_Config, request(data_dir, "train", 2, seed=5)), 12)
    for rank in range(2):
        it = data.input_iterator(
            _Config, request(data_dir, "train", 2, seed=5, rank=rank, world_size=2)
        )
        for batch, expected in zip(_take(it, 6), single[rank::2]):
            assert torch.equal(batch["inputs"].nodes, expected["inputs"].nodes)
            assert torch.equal(batch["targets"], expected["targets"])
    # The stream is one permutation of the 28 training graphs per epoch.
    it = data.input_iterator(_Config, request(data_dir, "train", 4, seed=5))
    stream = []
    while len(stream) < 2 * 28:
        batch = next(it)
        stream += batch["targets"][data.graph_padding_mask(batch["inputs"].n_node.numpy())].tolist()
    train_labels = sorted(_labels(graphs[i]) for i in splits["train"])
    assert sorted(stream[:28]) == train_labels and sorted(stream[28:56]) == train_labels


def test_train_order_depends_on_the_seed_and_is_bidirectional(prepared):
    data_dir, graphs, _ = prepared
    a = next(data.input_iterator(_Config, request(data_dir, "train", 3, seed=0)))
    b = next(data.input_iterator(_Config, request(data_dir, "train", 3, seed=1)))
    assert not torch.equal(a["inputs"].nodes, b["inputs"].nodes)
    g = a["inputs"]
    first = int(g.n_edge[0]) // 2
    assert torch.equal(g.senders[:first], g.receivers[first : 2 * first])
    assert torch.equal(g.edges[:first], g.edges[first : 2 * first])


def test_train_resumes_exactly_across_epochs(prepared):
    data_dir, _, _ = prepared
    req = request(data_dir, "train", 4, seed=2, rank=1, world_size=2)
    it = data.input_iterator(_Config, req)
    _take(it, 5)
    state = it.state_dict()
    rest = _take(it, 10)  # beyond the first epoch (28 graphs, <= 8 per global step)
    resumed = data.input_iterator(_Config, req)
    resumed.load_state_dict(torch.load(_roundtrip(state), weights_only=True))
    for a, b in zip(_take(resumed, 10), rest):
        for x, y in zip(a["inputs"], b["inputs"]):
            assert torch.equal(x, y)
        assert torch.equal(a["weights"], b["weights"])
    other = data.input_iterator(
        _Config, request(data_dir, "train", 4, seed=3, rank=1, world_size=2)
    )
    with pytest.raises(PipelineStateError, match="seed"):
        other.load_state_dict(state)


def test_eval_resumes(prepared):
    data_dir, _, _ = prepared
    req = request(data_dir, "validation", 1)
    it = data.input_iterator(_Config, req)
    next(it)
    state = it.state_dict()
    rest = list(it)
    again = data.input_iterator(_Config, req)
    again.load_state_dict(state)
    assert [b["graph_index"].tolist() for b in again] == [b["graph_index"].tolist() for b in rest]


def _roundtrip(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_synthetic_batch_has_real_shapes_and_ranges():
    gen = torch.Generator().manual_seed(0)
    batch = data.synthetic_batch(_Config, 8, gen)
    g = batch["inputs"]
    assert g.nodes.shape == (209, 9) and g.edges.shape == (448, 3) and g.n_node.shape == (9,)
    assert (g.nodes[:, 0] < 119).all() and (g.nodes >= 0).all()
    assert int(g.senders.max()) < 209 and batch["weights"][-1].sum() == 0
