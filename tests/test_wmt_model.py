"""WMT Transformer: counts, names, types, init, masks, shift, loss and metric (WORKLOADS.md §9).

The bitwise comparison against the reference model runs outside the repo (see the README); here
we check what can be checked without it.

    python -m pytest tests/test_wmt_model.py
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from algoperf_torch.spec import ParameterType
from algoperf_torch.workload import param_type_from_name
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config, meta_model
from algoperf_torch.workloads.wmt import workload as wmt
from algoperf_torch.workloads.wmt.model import (
    NEG_MASK,
    Transformer,
    TransformerConfig,
    decoder_masks,
    encoder_mask,
    shift_right,
)

PARAMS = {  # WORKLOADS.md §9.2, §9.5 (verified by instantiating the reference)
    "wmt": 133_521_408,
    "wmt_post_ln": 133_517_312,
    "wmt_attention_temp": 133_521_408,
    "wmt_glu_tanh": 146_116_608,
}
TARGETS = {
    "wmt": (30.8491, 30.7219),
    "wmt_post_ln": (30.0779, 29.8982),
    "wmt_attention_temp": (29.3379, 229.4143),
    "wmt_glu_tanh": (29.5779, 29.0515),
}
TINY = TransformerConfig(ntoken=50, d_model=16, nhead=4, d_hid=16, nlayers=2, max_len=12)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_counts_targets_and_reference_names(name):
    config = load_config(name)
    assert (config.validation_target, config.test_target) == TARGETS[name]
    assert config.eval_batch_size == 128 and config.step_hint == 120_000
    model = meta_model(name)
    named = dict(model.named_parameters())
    assert sum(p.numel() for p in named.values()) == PARAMS[name]
    assert next(iter(named)) == "shared_embedding.weight"
    enc = "encoder.encoder.layers.0."
    dec = "decoder.decoder.layers.5."
    for key in ("self_attn.in_proj.weight", "self_attn.out_proj.weight", "linear1.bias"):
        assert enc + key in named and dec + key in named
    assert dec + "multihead_attn.q_proj.weight" in named
    assert named[dec + "multihead_attn.kv_proj.weight"].shape == (2048, 1024)
    assert not any(k.endswith("in_proj.bias") or k.endswith("out_proj.bias") for k in named)
    assert ("encoder.encoder.norm.weight" in named) == (name != "wmt_post_ln")
    assert (enc + "linear_glu.weight" in named) == (name == "wmt_glu_tanh")


def test_parameter_types_follow_the_reference_name_rules():
    types = {k: param_type_from_name(k) for k, _ in meta_model("wmt").named_parameters()}
    assert types["shared_embedding.weight"] == ParameterType.EMBEDDING
    layer = "decoder.decoder.layers.0."
    assert types[layer + "self_attn.in_proj.weight"] == ParameterType.ATTENTION_QKV
    assert types[layer + "multihead_attn.q_proj.weight"] == ParameterType.ATTENTION_Q
    assert types[layer + "multihead_attn.kv_proj.weight"] == ParameterType.ATTENTION_KV
    assert types[layer + "multihead_attn.out_proj.weight"] == ParameterType.ATTENTION_OUT
    assert types[layer + "norm3.weight"] == ParameterType.LAYER_NORM_SCALE
    assert types[layer + "linear2.bias"] == ParameterType.BIAS
    assert get_workload_functions("wmt").is_output_param("shared_embedding.weight")


def test_init_statistics_and_identical_encoder_template():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, ntoken=2000, d_model=64, d_hid=128, nhead=4, nlayers=3)
    model = Transformer(cfg)
    emb = model.shared_embedding.weight
    assert abs(emb.std().item() - 1.0) < 0.05  # N(0, 1)
    layers = model.encoder.encoder.layers
    w = layers[0].linear1.weight  # xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (64 + 128))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert layers[0].linear1.bias.abs().max() < 1e-5  # N(0, 1e-6)
    # The final re-draw runs over all Linears, so the deep-copied layers differ after it ...
    assert not torch.equal(layers[0].linear1.weight, layers[1].linear1.weight)
    # ... and the tied embedding is the output projection.
    assert model.decoder.shared_embedding is model.shared_embedding
    assert "encoder.shared_embedding.weight" in model.state_dict()


def test_torch_rng_order_embedding_first_then_one_encoder_template():
    """The embedding is the first draw after seeding; the encoder layers start as copies of one
    template, whose attention weights were xavier-drawn right after their default init."""
    torch.manual_seed(0)
    want = torch.empty(TINY.ntoken, TINY.d_model).normal_()
    torch.manual_seed(0)
    model = Transformer(TINY)
    assert torch.equal(model.shared_embedding.weight, want)
    # Replay the construction draws up to the end of the template and its final norm, then the
    # decoder, then the final re-draw: the model's last Linear must match the replay.
    torch.manual_seed(0)
    torch.empty(TINY.ntoken, TINY.d_model).normal_()
    from algoperf_torch.workloads.wmt.model import TransformerDecoderLayer, TransformerEncoderLayer

    TransformerEncoderLayer(TINY)
    for _ in range(TINY.nlayers):
        TransformerDecoderLayer(TINY)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for m in linears:
        w = torch.empty_like(m.weight)
        torch.nn.init.xavier_uniform_(w)
        if m.bias is not None:
            torch.nn.init.normal_(torch.empty_like(m.bias), std=1e-6)
    assert torch.equal(w, linears[-1].weight)


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = Transformer(TINY)
    torch.manual_seed(3)
    b = Transformer(TINY)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_masks_and_shift_by_hand():
    src = torch.tensor([[5, 2, 7, 2, 0]])
    seg = torch.tensor([[1, 1, 2, 2, 0]])
    m = encoder_mask(src, seg)[0, 0]
    allowed = torch.tensor(
        [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    ).bool()
    assert torch.equal(m == 0, allowed) and (m[~allowed] == NEG_MASK).all()
    tgt = torch.tensor([[4, 2, 6, 6, 2]])
    tseg = torch.tensor([[1, 1, 2, 2, 2]])
    self_m, cross_m = decoder_masks(tgt, src, seg, tseg)
    assert (self_m[0, 0] == 0).tolist()[3] == [False, False, True, True, False]
    assert (cross_m[0, 0] == 0).tolist()[3] == [False, False, True, True, False]
    # The shift ignores packing: segment 2 starts with segment 1's EOS.
    assert shift_right(tgt).tolist() == [[0, 4, 2, 6, 6]]


def test_packed_rows_equal_separate_examples():
    """Packing changes nothing for an example except its place (masks + positions)."""
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    a_src, a_tgt = torch.tensor([5, 9, 2]), torch.tensor([7, 2])
    b_src, b_tgt = torch.tensor([11, 3, 4, 2]), torch.tensor([8, 6, 2])

    def pad(x):
        return torch.nn.functional.pad(x, (0, TINY.max_len - len(x)))[None]

    src, tgt = pad(torch.cat([a_src, b_src])), pad(torch.cat([a_tgt, b_tgt]))
    spos, tpos = pad(torch.tensor([0, 1, 2, 0, 1, 2, 3])), pad(torch.tensor([0, 1, 0, 1, 2]))
    sseg, tseg = pad(torch.tensor([1, 1, 1, 2, 2, 2, 2])), pad(torch.tensor([1, 1, 2, 2, 2]))
    with torch.no_grad():
        packed = model(src, tgt, spos, tpos, sseg, tseg, dropout_rate=0.0)
        first = model(pad(a_src), pad(a_tgt), dropout_rate=0.0)
        memory = model.encode(src, spos, sseg)
        alone = model.encode(pad(b_src))
    torch.testing.assert_close(packed[0, :2], first[0, :2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(memory[0, 3:7], alone[0, :4], rtol=1e-5, atol=1e-5)


def test_loss_contract_with_label_smoothing():
    config = load_config("wmt")
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, 0], [3, 0, 0]])
    weights = (targets > 0).long()
    out = wmt.loss(config, targets, logits, weights, 0.1)
    logp = logits.log_softmax(-1)
    want = -(0.9 * logp.gather(-1, targets[..., None])[..., 0] + 0.1 * logp.mean(-1)) * weights
    torch.testing.assert_close(out.per_example, want)
    assert out.n_valid_examples.item() == 3
    torch.testing.assert_close(out.summed, want.sum())
    # No mask: every position counts, padding included (as the reference).
    assert wmt.loss(config, targets, logits).n_valid_examples.item() == 6


def test_metric_divides_by_tokens_and_scores_bleu():
    config = load_config("wmt")
    metric = wmt.WmtMetrics(config)
    targets = torch.tensor([[5, 2, 0], [6, 7, 2]])
    logits = torch.full((2, 3, 9), -5.0)
    logits[0, 0, 5] = logits[0, 1, 3] = logits[1, 0, 6] = logits[1, 1, 7] = logits[1, 2, 2] = 5.0
    metric.update(logits, {"targets": targets, "weights": (targets > 0).long()})
    result = metric.compute(metric.state(), num_examples=2)
    assert result["accuracy"] == pytest.approx(4 / 5)
    assert result["bleu"] == 0.0  # nothing decoded


def test_cut_at_eos_keeps_the_reference_quirk():
    assert wmt.cut_at_eos(torch.tensor([4, 5, 2, 6, 2])) == [4, 5, 2]
    assert wmt.cut_at_eos(torch.tensor([4, 5, 6])) == [4]  # no EOS: argmax 0 keeps one token


def test_synthetic_batch_has_the_reference_keys():
    config = load_config("wmt")
    batch = wmt.synthetic_batch(config, 3, torch.Generator().manual_seed(0))
    assert tuple(batch) == wmt.TRAIN_KEYS
    for v in batch.values():
        assert v.dtype == torch.int64 and v.shape == (3, 256)
    assert torch.equal(batch["weights"], (batch["targets"] > 0).long())
    assert batch["inputs"].max() < 32000


def test_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(TINY, glu=True, activation="tanh"))
    src = torch.randint(3, 50, (2, 12))
    tgt = torch.randint(3, 50, (2, 12))
    logits = model(src, tgt, dropout_rate=0.1)
    assert logits.shape == (2, 12, 50)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.slow
def test_compiled_model_matches_eager():
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    src, tgt = torch.randint(3, 50, (2, 12)), torch.randint(3, 50, (2, 12))
    with torch.no_grad():
        want = model(src, tgt)
        got = torch.compile(model)(src, tgt)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
