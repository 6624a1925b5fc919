"""finewebedu_lm model, loss and metric, piece by piece (WORKLOADS.md §13.1-13.3).

The reference PyTorch model is not in the reference snapshot, so these tests check what the spec
states: names and counts of the full model (meta device), RoPE against a complex-number rotation,
QK-norm's eps placement, the attention against a hand-written softmax, the GLU, init statistics,
re-initialisation, the loss and the per-token metric.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import run_trial

from algoperf_torch.distributed import DistInfo
from algoperf_torch.spec import ParameterType
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config, meta_model
from algoperf_torch.workloads.finewebedu_lm import workload as lm
from algoperf_torch.workloads.finewebedu_lm.model import (
    MLP,
    Attention,
    LMConfig,
    Transformer,
    apply_rope,
    qk_norm,
    rope_table,
)

SMALL = dict(
    vocab_size=97, seq_len=16, model_dim=32, num_heads=4, num_layers=2, mlp_dim=48, multiple_of=16
)
# Hydra overrides of the same small model, for trials.
SMALL_OVERRIDES = [f"workload.model.{k}={v}" for k, v in SMALL.items()]


def small_config(**model):
    config = load_config("finewebedu_lm")
    return dataclasses.replace(config, model={**config.model, **SMALL, **model})


def test_full_model_names_counts_and_types():
    model = meta_model("finewebedu_lm")
    named = list(model.named_parameters())
    assert len(named) == 86
    assert sum(p.numel() for _, p in named) == 252_815_372
    per_layer = [
        "attn.attn_scale",
        "attn.w_qkv.weight",
        "attn.w_out.weight",
        "attn_norm.weight",
        "mlp.fc1.weight",
        "mlp.fc2.weight",
        "mlp_norm.weight",
    ]
    expected = ["embed_tokens.weight"]
    expected += [f"layers.{i}.{n}" for i in range(12) for n in per_layer]
    expected += ["out_norm.weight"]
    assert [n for n, _ in named] == expected
    shapes = dict((n, tuple(p.shape)) for n, p in named)
    assert shapes["embed_tokens.weight"] == (50257, 1024)
    assert shapes["layers.0.attn.w_qkv.weight"] == (3072, 1024)
    assert shapes["layers.0.mlp.fc1.weight"] == (8192, 1024)
    assert shapes["layers.0.mlp.fc2.weight"] == (1024, 4096)
    assert shapes["layers.0.attn.attn_scale"] == ()
    assert model.lm_head.weight is model.embed_tokens.weight
    assert tuple(model.freqs_cis.shape) == (1, 1024, 1, 64, 2)
    assert "freqs_cis" not in model.state_dict()  # non-persistent, as the reference
    types = {n: lm.param_type(n) for n in expected}
    assert types["layers.3.attn.w_qkv.weight"] == ParameterType.ATTENTION_QKV
    assert types["layers.3.attn.w_out.weight"] == ParameterType.ATTENTION_OUT
    assert types["layers.3.attn.attn_scale"] == ParameterType.WEIGHT
    assert types["embed_tokens.weight"] == ParameterType.EMBEDDING
    assert types["out_norm.weight"] == types["layers.0.mlp_norm.weight"]
    assert types["out_norm.weight"] == ParameterType.LAYER_NORM_SCALE
    assert types["layers.0.mlp.fc1.weight"] == ParameterType.WEIGHT
    fns = get_workload_functions("finewebedu_lm")
    assert not any(fns.is_output_param(n) for n in expected)  # lm_head is tied away


def test_rope_is_the_interleaved_complex_rotation():
    head_dim, seq_len, theta = 8, 1024, 500_000.0
    table = rope_table(head_dim, seq_len, theta)
    # Frequencies: θ^(-2i/d) at positions p. float32 angles p·ω carry ≤ 1023 x 2^-23 rad of error.
    p = torch.arange(seq_len, dtype=torch.float64)[:, None]
    omega = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    exact = p * omega  # [L, hd/2]
    bound = 1023 * 2**-23 * 2 + 1e-6
    assert torch.allclose(table[0, :, 0, :, 0].double(), exact.cos(), atol=bound, rtol=0)
    assert torch.allclose(table[0, :, 0, :, 1].double(), exact.sin(), atol=bound, rtol=0)
    # Layout: channels (2i, 2i+1) are the real and imaginary parts of one complex number.
    x = torch.randn(2, seq_len, 3, head_dim, generator=torch.Generator().manual_seed(0))
    got = apply_rope(x, table)
    z = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
    rot = torch.polar(torch.ones_like(exact), exact)[None, :, None, :]  # e^{i p ω}
    want = torch.view_as_real(z * rot).flatten(3)
    # |x| ~ 1: the angle error above, plus float32 rounding of the products.
    assert torch.allclose(got.double(), want, atol=2 * bound + 1e-5, rtol=0)
    assert got.dtype == x.dtype
    assert torch.equal(apply_rope(x[:, :1], table[:, :1]), x[:, :1])  # position 0: identity


def test_qk_norm_adds_eps_after_dividing():
    x = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(qk_norm(x, 0.1), torch.tensor([[0.7, 0.9]]))  # not 3/5.1, 4/5.1
    assert torch.allclose(qk_norm(x, 0.0), torch.tensor([[0.6, 0.8]]))


def test_attention_matches_a_hand_written_causal_softmax():
    torch.manual_seed(0)
    cfg = LMConfig(**SMALL)
    attn = Attention(cfg)
    with torch.no_grad():
        attn.attn_scale.fill_(3.0)
    assert math.isclose(
        Attention(LMConfig(seq_len=1024, model_dim=16, num_heads=2)).attn_scale.item(),
        math.log2(1024**2 - 1024),
        rel_tol=1e-7,
    )
    x = torch.randn(2, cfg.seq_len, cfg.model_dim)
    table = rope_table(cfg.model_dim // cfg.num_heads, cfg.seq_len, cfg.rope_theta)
    with torch.no_grad():
        got = attn(x, table)
        b, n, h, hd = 2, cfg.seq_len, cfg.num_heads, cfg.model_dim // cfg.num_heads
        q, k, v = (attn.w_qkv(x).double()).split(cfg.model_dim, dim=2)
        q = apply_rope(q.view(b, n, h, hd), table.double()).transpose(1, 2)
        k = apply_rope(k.view(b, n, h, hd), table.double()).transpose(1, 2)
        v = v.view(b, n, h, hd).transpose(1, 2)
        q = (q / q.norm(dim=-1, keepdim=True) + cfg.qknorm_eps) * 3.0
        k = k / k.norm(dim=-1, keepdim=True) + cfg.qknorm_eps
        logits = q @ k.transpose(-1, -2)  # no 1/sqrt(d): scale=1
        logits = logits.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, cfg.model_dim)
        want = attn.w_out.weight.double() @ out.unsqueeze(-1)
    # float32 against float64: sums of ≤ 32 products of O(0.1) terms.
    assert torch.allclose(got.double(), want.squeeze(-1), atol=1e-5, rtol=1e-4)


def test_mlp_is_a_sigmoid_glu():
    torch.manual_seed(0)
    mlp = MLP(8, 20, multiple_of=16)  # width rounded up to 32
    assert tuple(mlp.fc1.weight.shape) == (64, 8) and tuple(mlp.fc2.weight.shape) == (8, 32)
    x = torch.randn(2, 3, 8)
    h = x @ mlp.fc1.weight.T
    want = (h[..., :32] * torch.sigmoid(h[..., 32:])) @ mlp.fc2.weight.T
    assert torch.allclose(mlp(x), want, atol=1e-6)


def test_init_statistics_and_tying():
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=2000, seq_len=64, model_dim=128, num_heads=4, num_layers=3)
    model = Transformer(cfg)
    std_res = 0.02 / math.sqrt(2 * cfg.num_layers)
    for name, p in model.named_parameters():
        if name.endswith(("fc2.weight", "w_out.weight")):
            want = std_res
        elif name.endswith(("fc1.weight", "w_qkv.weight", "embed_tokens.weight")):
            want = 0.02
        elif name.endswith("attn_scale"):
            assert p.item() == pytest.approx(math.log2(64**2 - 64))
            continue
        else:  # RMSNorm weights
            assert torch.equal(p, torch.ones_like(p)), name
            continue
        # ≥ 65k draws each: the sample std is within 2% of the true one (> 5 sigma).
        assert p.std().item() == pytest.approx(want, rel=0.02), name
        assert abs(p.mean().item()) < 5 * want / math.sqrt(p.numel()), name
    for chunk in model.layers[0].attn.w_qkv.weight.chunk(3):
        assert chunk.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.lm_head.weight is model.embed_tokens.weight


def test_forward_is_causal_and_reinit_keeps_scales():
    torch.manual_seed(0)
    model = Transformer(LMConfig(**SMALL)).eval()
    tokens = torch.randint(0, SMALL["vocab_size"], (2, SMALL["seq_len"]))
    changed = tokens.clone()
    changed[:, 9] = (changed[:, 9] + 1) % SMALL["vocab_size"]
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (2, SMALL["seq_len"], SMALL["vocab_size"])
    assert torch.equal(a[:, :9], b[:, :9]) and not torch.equal(a[:, 9:], b[:, 9:])
    onehot = F.one_hot(tokens, SMALL["vocab_size"]).float()  # model_fn takes one-hot ids too
    assert torch.equal(lm.forward(model, {"inputs": onehot}, False, None), a)
    with pytest.raises(ValueError, match="exceeds the model's seq_len"):
        model(torch.zeros(1, SMALL["seq_len"] + 1, dtype=torch.long))
    # Re-init (a second init_model_fn): new draws, no re-seed; attn_scale and norms stay.
    w = Workload(small_config(), get_workload_functions("finewebedu_lm"), DistInfo())
    first, _ = w.init_model_fn([3, 0])
    with torch.no_grad():
        first.layers[0].attn.attn_scale.fill_(7.0)
        first.out_norm.weight.fill_(2.0)
    before = first.layers[1].mlp.fc1.weight.clone()
    again, _ = w.init_model_fn([3, 0])
    assert again is first and not torch.equal(before, again.layers[1].mlp.fc1.weight)
    assert again.layers[0].attn.attn_scale.item() == 7.0
    assert torch.equal(again.out_norm.weight, torch.full_like(again.out_norm.weight, 2.0))
    assert again.lm_head.weight is again.embed_tokens.weight
    assert w.model_params_types["layers.0.attn.w_qkv.weight"] == ParameterType.ATTENTION_QKV


def test_loss_label_smoothing_mask_and_counts():
    config = small_config()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    targets = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    eps = 0.1
    logp = logits.double().log_softmax(-1)
    onehot = F.one_hot(targets, 7).double()
    want = -(((1 - eps) * onehot + eps / 7) * logp).sum(-1)  # [2, 5]
    out = lm.loss(config, targets, logits, mask, eps)
    assert out.per_example.shape == (2, 5)
    assert torch.allclose(out.per_example.double(), want * mask, atol=1e-6)
    assert out.n_valid_examples.item() == 8
    assert out.summed.item() == pytest.approx((want * mask).sum().item(), rel=1e-6)
    unmasked = lm.loss(config, targets, logits)
    assert unmasked.n_valid_examples.item() == 10
    assert unmasked.n_valid_examples.dtype == torch.float32


def test_metric_is_per_token_and_ppl_is_exp_of_it():
    config = small_config()
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 11, generator=g)
    targets = torch.randint(0, 11, (3, 4), generator=g)
    weights = torch.ones(3, 4)
    weights[2] = 0  # a padded row
    nll = F.cross_entropy(logits.double().reshape(-1, 11), targets.reshape(-1), reduction="none")
    mean = (nll.view(3, 4)[:2]).mean().item()
    metric = lm.make_metric(config)
    for rows in (slice(0, 1), slice(1, 3)):  # split batches sum to the same
        metric.update(logits[rows], {"targets": targets[rows], "weights": weights[rows]})
    result = metric.compute(metric.state(), num_examples=999)
    assert result["loss"] == pytest.approx(mean, rel=1e-6)
    assert result["ppl"] == pytest.approx(math.exp(mean), rel=1e-6)
    empty = lm.make_metric(config)
    with pytest.raises(ValueError, match="no valid"):
        empty.compute(empty.state(), 0)


def test_target_is_non_strict_and_there_is_no_test_target():
    config = load_config("finewebedu_lm")
    assert config.target_inclusive and config.test_target is None
    assert config.reached(22.2995, config.validation_target)
    assert not config.reached(22.2996, config.validation_target)
    assert not load_config("mnist").reached(0.97, 0.97)  # the others stay strict


def test_three_step_synthetic_trial_with_chunked_eval(tmp_path):
    summary = run_trial(
        tmp_path,
        [
            "workload=finewebedu_lm",
            "data=synthetic",
            "max_steps=3",
            "batch_size=2",
            "data.synthetic_eval_examples=5",
            "workload.eval_batch_size=4",
            "workload.eval_chunk_size=3",
            "workload.compile=off",
            *SMALL_OVERRIDES,
        ],
    )
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1
    import csv
    import json
    import os

    trial = summary["trial_dir"]
    rows = list(csv.DictReader(open(os.path.join(trial, "eval_measurements.csv"))))
    assert float(rows[-1]["validation/ppl"]) == pytest.approx(
        math.exp(float(rows[-1]["validation/loss"])), rel=1e-9
    )
    assert not any(k.startswith("test/") for k in rows[-1])
    meta = json.load(open(os.path.join(trial, "meta_data_0.json")))
    assert meta["compute_dtype"] == "float32"  # CPU: no bf16 autocast


@pytest.mark.slow
def test_compiled_small_model_matches_eager():
    torch.manual_seed(0)
    model = Transformer(LMConfig(**SMALL)).eval()
    tokens = torch.randint(0, SMALL["vocab_size"], (2, SMALL["seq_len"]))
    with torch.no_grad():
        eager = model(tokens)
        compiled = torch.compile(model)(tokens)
    # Fused kernels reorder float32 sums: logits O(1), a few ulps x depth.
    assert torch.allclose(eager, compiled, atol=1e-4, rtol=1e-4)


def test_scoring_reads_the_target_from_the_workload_yaml():
    from algoperf_torch.scoring.rules import RULES
    from algoperf_torch.scoring.targets import WORKLOAD_CONF_DIR, load_workload_targets

    assert (WORKLOAD_CONF_DIR / "finewebedu_lm.yaml").exists()
    target = load_workload_targets()[0]["finewebedu_lm"]
    assert (target.target_metric, target.target_minimize) == ("ppl", True)
    assert target.validation_target == 22.2995 and target.test_target is None
    assert target.budget("v0.6", self_tuning=True) == 1.5 * 31967
    assert "finewebedu_lm" in RULES["v0.6-lm"].base_workloads


def test_bf16_autocast_on_cuda_only():
    assert lm.compute_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16
    assert lm.compute_dtype("bfloat16", torch.device("cpu")) == torch.float32
    assert lm.compute_dtype("float32", torch.device("cuda")) == torch.float32
    with pytest.raises(ValueError, match="model.compute_dtype='fp8'"):
        lm.compute_dtype("fp8", torch.device("cuda"))
    meta = lm.meta_data(load_config("finewebedu_lm"), torch.device("cuda"))
    assert meta == {"compute_dtype": "bfloat16"}


def test_chunked_eval_equals_whole_batches():
    from algoperf_torch.evaluation import evaluate_split

    results = []
    for chunk in (None, 3):
        config = dataclasses.replace(small_config(), eval_batch_size=8, eval_chunk_size=chunk)
        w = Workload(
            config,
            get_workload_functions("finewebedu_lm"),
            DistInfo(),
            synthetic=True,
            synthetic_eval_examples=13,
        )
        model, _ = w.init_model_fn([0, 0])
        results.append(evaluate_split(w, model, "validation", seed=2))
    # The same token sum, added in another order: float32 per-token terms, float64 sums.
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-6)
