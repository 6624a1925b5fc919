"""OGBG graph network and its variants: configs, parameter names/counts, init, forward invariants.

Bitwise equality with the reference's model was checked outside the repo (see the README); here
what can be checked without it: counts, names, types, init statistics, and the graph semantics
(padding changes nothing, every graph is computed independently, sums are scatter sums).

    python -m pytest tests/test_ogbg_model.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from algoperf_torch.spec import ParameterType, WorkloadConfig
from algoperf_torch.workload import param_type_from_name
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.ogbg import data
from algoperf_torch.workloads.ogbg.graphs import GraphsTuple
from algoperf_torch.workloads.ogbg.model import _segment_sum

# name -> (parameters, validation target, test target) [WORKLOADS.md §8.2, §8.5].
EXPECTED = {
    "ogbg": (3_554_176, 0.28098, 0.268729),
    "ogbg_gelu": (3_554_176, 0.27771, 0.262926),
    "ogbg_silu": (3_554_176, 0.282178, 0.272144),
    "ogbg_model_size": (2_571_648, 0.269446, 0.253051),
}


@pytest.fixture(scope="module")
def configs() -> dict[str, WorkloadConfig]:
    from conftest import compose_many

    cfgs = compose_many([[f"workload={n}"] for n in EXPECTED])
    return {
        n: WorkloadConfig.from_dict(OmegaConf.to_container(c.workload, resolve=True))
        for n, c in zip(EXPECTED, cfgs)
    }


def build(config: WorkloadConfig, seed: int = 0, **model):
    if model:
        config = WorkloadConfig.from_dict({**config.__dict__, "model": {**config.model, **model}})
    torch.manual_seed(seed)
    return get_workload_functions(config.impl).build_model(config)


@pytest.mark.parametrize("name", EXPECTED)
def test_config_targets_and_param_count(configs, name):
    config = configs[name]
    count, val, test = EXPECTED[name]
    assert (config.name, config.impl, config.validation_target, config.test_target) == (
        name,
        "ogbg",
        val,
        test,
    )
    assert config.base == (None if name == "ogbg" else "ogbg")
    with torch.device("meta"):
        model = get_workload_functions("ogbg").build_model(config)
    assert sum(p.numel() for p in model.parameters()) == count


def test_base_constants(configs):
    c = configs["ogbg"]
    assert (c.max_runtime, c.eval_period, c.step_hint, c.eval_batch_size) == (
        12011,
        240,
        52000,
        32768,
    )
    assert (c.num_train_examples, c.num_validation_examples, c.num_test_examples) == (
        350343,
        43793,
        43793,
    )
    assert c.num_eval_train_examples == 43793 and c.loss_type == "softmax_cross_entropy"
    assert (c.v05_max_runtime, c.v05_step_hint) == (18477, 80000)
    assert c.model["activation"] == "relu" and configs["ogbg_gelu"].model["activation"] == "gelu"


def test_parameter_names_order_and_types(configs):
    with torch.device("meta"):
        model = build(configs["ogbg"])
    names = [n for n, _ in model.named_parameters()]
    mlp = [f"{p}.{w}" for p in ("dense_0", "norm_0") for w in ("weight", "bias")]
    expected = ["node_embedder.weight", "node_embedder.bias", "edge_embedder.weight"]
    expected += ["edge_embedder.bias"]
    for step in range(5):
        for fn in ("update_edge_fn", "update_node_fn", "update_global_fn"):
            expected += [f"graph_network.{step}.{fn}.{m}" for m in mlp]
    expected += ["decoder.weight", "decoder.bias"]
    assert names == expected
    types = {n: param_type_from_name(n) for n in names}
    assert types["graph_network.0.update_edge_fn.norm_0.weight"] == ParameterType.LAYER_NORM_SCALE
    assert types["graph_network.4.update_global_fn.norm_0.bias"] == ParameterType.LAYER_NORM_BIAS
    assert types["graph_network.2.update_node_fn.dense_0.weight"] == ParameterType.WEIGHT
    assert types["decoder.bias"] == ParameterType.BIAS
    fn = get_workload_functions("ogbg").is_output_param
    assert [n for n in names if fn(n)] == ["decoder.weight", "decoder.bias"]
    with torch.device("meta"):
        small = build(configs["ogbg_model_size"])
    shapes = dict((n, tuple(p.shape)) for n, p in small.named_parameters())
    assert shapes["graph_network.0.update_edge_fn.dense_0.weight"] == (256, 3 * 128 + 128)
    assert shapes["graph_network.2.update_global_fn.dense_1.weight"] == (256, 256)
    assert "graph_network.3.update_edge_fn.dense_0.weight" not in shapes


def test_init_is_lecun_truncated_normal_and_seeded(configs):
    model = build(configs["ogbg"], seed=0)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif ".norm_" in name:
            assert torch.all(p == 1), name
        else:
            fan_in = p.shape[1]
            bound = 2 * math.sqrt(1 / fan_in) / 0.87962566103423978
            assert p.abs().max() <= bound, name
            if p.numel() > 10_000:  # std of the truncated normal is sqrt(1 / fan_in)
                assert p.std().item() == pytest.approx(math.sqrt(1 / fan_in), rel=0.05), name
    again = build(configs["ogbg"], seed=0)
    other = build(configs["ogbg"], seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert not torch.equal(model.decoder.weight, other.decoder.weight)


def test_segment_sum_is_a_scatter_sum():
    src = torch.arange(12.0).reshape(6, 2)
    out = _segment_sum(src, torch.tensor([2, 0, 2, 1, 0, 2]), 4)
    expected = torch.tensor([[2 + 8, 3 + 9], [6, 7], [0 + 4 + 10, 1 + 5 + 11], [0, 0]])
    assert torch.equal(out, expected.float())


def _batch(config, sizes_seed=0, b=6):
    gen = torch.Generator().manual_seed(sizes_seed)
    return data.synthetic_batch(config, b, gen)


def test_batch_shapes_and_dtypes(configs):
    batch = _batch(configs["ogbg"], b=6)
    g = batch["inputs"]
    assert isinstance(g, GraphsTuple) and g._fields == (
        "nodes",
        "edges",
        "receivers",
        "senders",
        "globals",
        "n_node",
        "n_edge",
    )
    assert g.nodes.shape == (26 * 6 + 1, 9) and g.nodes.dtype == torch.float32
    assert g.edges.shape == (56 * 6, 3) and g.senders.shape == g.receivers.shape == (56 * 6,)
    assert g.n_node.shape == g.n_edge.shape == (7,) and g.n_node.dtype == torch.int64
    assert batch["targets"].shape == batch["weights"].shape == (7, 128)
    assert batch["weights"].dtype == torch.bool
    assert int(g.n_node.sum()) == 26 * 6 + 1 and int(g.n_edge.sum()) == 56 * 6


@pytest.mark.parametrize("name", ["ogbg", "ogbg_gelu", "ogbg_model_size"])
def test_graphs_are_independent_and_padding_changes_nothing(configs, name):
    """Each graph's logits depend on that graph only: the same graph alone in a padded batch of
    another size gives the same logits. Only the GEMM blocking may differ with the row count
    (a few float32 ulp per layer), hence 1e-5."""
    model = build(configs[name], seed=0).eval()
    config = configs[name]
    gen = torch.Generator().manual_seed(3)
    mol_batch = data.synthetic_batch(config, 5, gen)
    with torch.no_grad():
        logits = model(mol_batch["inputs"])
    assert logits.shape == (6, 128)
    g = mol_batch["inputs"]
    nodes_start = np.concatenate([[0], np.cumsum(g.n_node.numpy())])
    edges_start = np.concatenate([[0], np.cumsum(g.n_edge.numpy())])
    for k in (0, 3):
        n0, n1 = nodes_start[k], nodes_start[k + 1]
        e0, e1 = edges_start[k], edges_start[k + 1]
        bonds = (e1 - e0) // 2
        mol = data.Molecules(
            num_nodes=np.array([n1 - n0]),
            num_edges=np.array([bonds]),
            node_feat=g.nodes[n0:n1].numpy(),
            edge_feat=g.edges[e0 : e0 + bonds].numpy(),
            edge_index=np.stack(
                [
                    g.senders[e0 : e0 + bonds].numpy() - n0,
                    g.receivers[e0 : e0 + bonds].numpy() - n0,
                ],
                1,
            ),
            labels=np.zeros((1, 128), np.int8),
        )
        alone = data.build_batch(mol, np.array([0]), data.budgets(2, config.data))
        assert torch.equal(alone["inputs"].senders[: e1 - e0], g.senders[e0:e1] - n0)
        with torch.no_grad():
            single = model(alone["inputs"])
        torch.testing.assert_close(single[0], logits[k], rtol=1e-5, atol=1e-5)


def test_dropout_follows_mode_and_rate(configs):
    model = build(configs["ogbg"], seed=0)
    batch = _batch(configs["ogbg"])
    model.eval()
    with torch.no_grad():
        ref = model(batch["inputs"])
        model.train()
        assert torch.equal(model(batch["inputs"], dropout_rate=0.0), ref)
        torch.manual_seed(0)
        a = model(batch["inputs"])  # default rate 0.1
        torch.manual_seed(0)
        b = model(batch["inputs"], dropout_rate=0.1)
    assert torch.equal(a, b) and not torch.equal(a, ref)


def test_every_parameter_gets_a_gradient(configs):
    from algoperf_torch.workloads.ogbg.metrics import loss

    model = build(configs["ogbg_model_size"], seed=0)
    batch = _batch(configs["ogbg"])
    out = loss(configs["ogbg"], batch["targets"], model(batch["inputs"]), batch["weights"])
    out.summed.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.slow
def test_compiles_with_static_shapes(configs):
    """torch.compile(fullgraph=True) traces one graph for every batch of a given b."""
    model = build(configs["ogbg"], seed=0, latent_dim=32, hidden_dims=[32]).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    for seed in (0, 1):
        batch = _batch(configs["ogbg"], sizes_seed=seed)
        with torch.no_grad():
            torch.testing.assert_close(
                compiled(batch["inputs"]), model(batch["inputs"]), rtol=1e-5, atol=1e-5
            )
