"""LibriSpeech Conformer / DeepSpeech and their variants: counts, names, init, shapes, masking.

The bitwise comparison with the reference models (init, forward, gradients) runs outside the
repository (see the workload's README section); these tests check what can be checked without
the reference.

python -m pytest tests/test_librispeech_models.py
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.layers.batch_norm import set_running_stats_update
from algoperf_torch.spec import ParameterType
from algoperf_torch.workload import param_type_from_name
from algoperf_torch.workloads.librispeech_conformer import model as conformer
from algoperf_torch.workloads.librispeech_deepspeech import model as deepspeech

SPECAUG = dict(
    use_specaug=True,
    freq_mask_count=2,
    freq_mask_max_bins=27,
    time_mask_count=10,
    time_mask_max_frames=40,
    time_mask_max_ratio=0.05,
    time_masks_per_frame=0.0,
    use_dynamic_time_mask_max_frames=True,
)
CONFORMER = dict(
    vocab_size=1024,
    encoder_dim=512,
    num_attention_heads=8,
    num_encoder_layers=4,
    convolution_kernel_size=5,
    feed_forward_expansion_factor=4,
    attention_dropout_rate=0.0,
    feed_forward_dropout_rate=0.0,
    dropout_rate=0.1,
    batch_norm_momentum=0.001,
    batch_norm_epsilon=0.001,
    activation="swish",
    attention_temperature=1.0,
    use_post_layer_norm=True,
    **SPECAUG,
)
DEEPSPEECH = dict(
    vocab_size=1024,
    encoder_dim=512,
    num_lstm_layers=6,
    num_ffn_layers=3,
    dropout_rate=0.1,
    batch_norm_momentum=0.001,
    batch_norm_epsilon=0.001,
    enable_residual_connections=True,
    enable_decoder_layer_norm=True,
    bidirectional=True,
    use_tanh=False,
    layernorm_everywhere=False,
    **SPECAUG,
)
# name -> (builder, model: changes, parameter count) [WORKLOADS.md §6.2, §6.5, §7.2, §7.4].
VARIANTS = {
    "librispeech_conformer": (conformer.build_conformer, CONFORMER, {}, 32_321_792),
    "librispeech_conformer_attention_temperature": (
        conformer.build_conformer,
        CONFORMER,
        {"attention_temperature": 1.6},
        32_321_792,
    ),
    "librispeech_conformer_layernorm": (
        conformer.build_conformer,
        CONFORMER,
        {"use_post_layer_norm": False},
        32_317_696,
    ),
    "librispeech_conformer_gelu": (
        conformer.build_conformer,
        CONFORMER,
        {"activation": "gelu"},
        32_321_792,
    ),
    "librispeech_deepspeech": (deepspeech.build_deepspeech, DEEPSPEECH, {}, 18_393_600),
    "librispeech_deepspeech_tanh": (
        deepspeech.build_deepspeech,
        DEEPSPEECH,
        {"use_tanh": True},
        18_393_600,
    ),
    "librispeech_deepspeech_no_resnet": (
        deepspeech.build_deepspeech,
        DEEPSPEECH,
        {"enable_residual_connections": False},
        18_393_600,
    ),
    "librispeech_deepspeech_norm_and_spec_aug": (
        deepspeech.build_deepspeech,
        DEEPSPEECH,
        {
            "layernorm_everywhere": True,
            "enable_decoder_layer_norm": False,
            "freq_mask_count": 4,
            "time_mask_count": 15,
        },
        18_392_576,
    ),
}
TINY_CONFORMER = {
    **CONFORMER,
    "vocab_size": 11,
    "encoder_dim": 16,
    "num_attention_heads": 2,
    "num_encoder_layers": 2,
}
TINY_DEEPSPEECH = {**DEEPSPEECH, "vocab_size": 11, "encoder_dim": 16, "num_lstm_layers": 2}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parameter_count_on_meta(name):
    build, base, changes, count = VARIANTS[name]
    with torch.device("meta"):
        model = build({**base, **changes})
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.fixture(scope="module")
def full_conformer() -> nn.Module:
    torch.manual_seed(0)
    return conformer.build_conformer(CONFORMER)


@pytest.fixture(scope="module")
def full_deepspeech() -> nn.Module:
    torch.manual_seed(0)
    return deepspeech.build_deepspeech(DEEPSPEECH)


def test_conformer_names_and_types(full_conformer):
    names = [k for k, _ in full_conformer.named_parameters()]
    block = [
        "ff1.ln.scale", "ff1.ln.bias", "ff1.linear1.weight", "ff1.linear1.bias",
        "ff1.linear2.weight", "ff1.linear2.bias", "mhsa.ln.scale", "mhsa.ln.bias",
        "mhsa.self_attention.in_proj.weight", "mhsa.self_attention.in_proj.bias",
        "mhsa.self_attention.out_proj.weight", "mhsa.self_attention.out_proj.bias",
        "mhsa.self_attention.qs.scale", "conv.ln.scale", "conv.ln.bias", "conv.lin1.weight",
        "conv.lin1.bias", "conv.lin2.weight", "conv.lin2.bias", "conv.conv1.weight",
        "conv.bn.scale", "conv.bn.bias", "conv.lin3.weight", "conv.lin3.bias",
        "ff2.ln.scale", "ff2.ln.bias", "ff2.linear1.weight", "ff2.linear1.bias",
        "ff2.linear2.weight", "ff2.linear2.bias", "ln.scale", "ln.bias",
    ]  # fmt: skip
    subsample = [
        "subsample.conv1.kernel", "subsample.conv1.bias", "subsample.conv2.kernel",
        "subsample.conv2.bias", "subsample.linear.weight", "subsample.linear.bias",
    ]  # fmt: skip
    blocks = [f"conformers.{i}.{n}" for i in range(4) for n in block]
    assert names == subsample + blocks + ["ln.scale", "ln.bias", "lin.weight", "lin.bias"]
    buffers = [k for k in full_conformer.state_dict() if k not in names]
    assert buffers[:5] == [
        "preprocessor._normalizer_mean",
        "preprocessor._normalizer_stddev",
        "preprocessor.stft.window",
        "subsample.conv1.paddings_kernel",
        "subsample.conv2.paddings_kernel",
    ]
    assert (
        "conformers.0.conv.bn.dim" in buffers and "subsample.pos_encode.inv_timescales" in buffers
    )
    types = {k: param_type_from_name(k) for k in names}
    assert types["conformers.0.conv.bn.scale"] == ParameterType.BATCH_NORM_SCALE
    assert types["conformers.0.mhsa.self_attention.in_proj.weight"] == ParameterType.ATTENTION_QKV
    assert types["subsample.conv1.kernel"] == ParameterType.CONV_WEIGHT


def test_deepspeech_names(full_deepspeech):
    names = [k for k, _ in full_deepspeech.named_parameters()]
    lstm = [
        "bn_normalization_layer.weight", "bn_normalization_layer.bias",
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
        "lstm.weight_ih_l0_reverse", "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse",
        "lstm.bias_hh_l0_reverse",
    ]  # fmt: skip
    ffn = ["bn_normalization_layer.weight", "bn_normalization_layer.bias", "lin.weight", "lin.bias"]
    want = [f"subsample.{c}.{p}" for c in ("conv1", "conv2") for p in ("kernel", "bias")]
    want += ["subsample.lin.weight", "subsample.lin.bias"]
    want += [f"lstms.{i}.{n}" for i in range(6) for n in lstm]
    want += [f"ffns.{i}.{n}" for i in range(3) for n in ffn]
    assert names == want + ["ln.scale", "ln.bias", "lin.weight", "lin.bias"]
    assert param_type_from_name("lstms.0.bn_normalization_layer.weight") == (
        ParameterType.BATCH_NORM_SCALE
    )
    with torch.device("meta"):
        ln_variant = deepspeech.build_deepspeech({**DEEPSPEECH, "layernorm_everywhere": True})
    ln_names = [k for k, _ in ln_variant.named_parameters()]
    assert "ffns.2.normalization_layer.scale" in ln_names and "ln.scale" in ln_names


def _xavier_bound(w: torch.Tensor) -> float:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
    return math.sqrt(6.0 / (fan_in + fan_out))


def _check_uniform(w: torch.Tensor, bound: float) -> None:
    """U(-bound, bound): inside the bound, std bound/√3 within 5 standard errors."""
    n = w.numel()
    assert w.abs().max() <= bound
    std = bound / math.sqrt(3)
    # The sample variance of U(-a, a) has relative standard error sqrt(0.8 / n).
    assert abs(w.double().std().item() / std - 1) < 5 * math.sqrt(0.8 / n) / 2 + 1e-3
    assert abs(w.double().mean().item()) < 5 * std / math.sqrt(n)


def test_conformer_init_statistics(full_conformer):
    for name, p in full_conformer.named_parameters():
        if name.endswith(("kernel", "weight")) and p.ndim >= 2:
            _check_uniform(p.detach(), _xavier_bound(p))
        else:  # biases, norm scales, BN and QueryScaler params start at 0
            assert torch.all(p == 0), name
    # QueryScaler's zero init is (almost exactly) the identity: 1.442695041 * ln 2.
    qs = full_conformer.conformers[0].mhsa.self_attention.qs
    torch.testing.assert_close(qs(torch.ones(64)), torch.ones(64), rtol=0, atol=1e-8)


def test_deepspeech_init_statistics(full_deepspeech):
    for name, p in full_deepspeech.named_parameters():
        if ".lstm." in name:  # torch's LSTM default: U(±1/sqrt(hidden)) for weights and biases
            _check_uniform(p.detach(), 1 / math.sqrt(256))
        elif name.endswith(("kernel", "weight")) and p.ndim >= 2:
            _check_uniform(p.detach(), _xavier_bound(p))
        else:
            assert torch.all(p == 0), name


def _xavier_all(modules: list[nn.Module]) -> None:
    for m in modules:
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def test_conformer_init_replays_the_reference_rng_order():
    """Hand replay of WORKLOADS.md §6.1's torch-RNG order with fresh torch modules."""
    torch.manual_seed(3)
    model = conformer.build_conformer(TINY_CONFORMER)
    torch.manual_seed(3)
    kernels = [nn.init.xavier_uniform_(torch.empty(s)) for s in ((16, 1, 3, 3), (16, 16, 3, 3))]
    sub = nn.Linear(320, 16)
    blocks = []
    for _ in range(2):  # construction order: ff1, mhsa, conv (lin1, lin2, depthwise, lin3), ff2
        ff1 = [nn.Linear(16, 64), nn.Linear(64, 16)]
        mhsa = [nn.Linear(16, 48), nn.Linear(16, 16)]
        conv = [nn.Linear(16, 16), nn.Linear(16, 16), nn.Conv1d(16, 16, 5, groups=16, bias=False)]
        conv.append(nn.Linear(16, 16))
        blocks.append((ff1, mhsa, conv, [nn.Linear(16, 64), nn.Linear(64, 16)]))
    lin = nn.Linear(16, 11)
    _xavier_all([sub] + [m for b in blocks for part in b for m in part] + [lin])
    z = torch.zeros(16)

    def ps(m: nn.Module) -> list[torch.Tensor]:
        return list(m.parameters())

    want = [kernels[0], z, kernels[1], z, *ps(sub)]
    for ff1, mhsa, conv, ff2 in blocks:
        want += [z, z, *ps(ff1[0]), *ps(ff1[1]), z, z, *ps(mhsa[0]), *ps(mhsa[1]), torch.zeros(8)]
        want += [z, z, *ps(conv[0]), *ps(conv[1]), *ps(conv[2]), z, z, *ps(conv[3])]
        want += [z, z, *ps(ff2[0]), *ps(ff2[1]), z, z]
    want += [z, z, *ps(lin)]
    got = list(model.parameters())
    assert len(got) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_deepspeech_init_replays_the_lazy_forward_draws():
    """Hand replay of WORKLOADS.md §7.1's torch-RNG order, LazyLinear materialisation included."""
    torch.manual_seed(3)
    model = deepspeech.build_deepspeech(TINY_DEEPSPEECH)
    torch.manual_seed(3)
    kernels = [nn.init.xavier_uniform_(torch.empty(s)) for s in ((16, 1, 3, 3), (16, 16, 3, 3))]
    lstms = [nn.LSTM(16, 8, bidirectional=True, batch_first=True) for _ in range(2)]
    lin = nn.Linear(16, 11)
    torch.randn(2, 320_000)  # the reference's dummy audio for the lazy forward
    lazy = [nn.Linear(320, 16)] + [nn.Linear(16, 16) for _ in range(3)]
    _xavier_all(lazy + [lin])
    want = kernels[:1] + [torch.zeros(16)] + kernels[1:] + [torch.zeros(16)]
    want += [lazy[0].weight, lazy[0].bias]
    for m in lstms:
        want += [torch.zeros(16), torch.zeros(16), *m.parameters()]
    for m in lazy[1:]:
        want += [torch.zeros(16), torch.zeros(16), m.weight, m.bias]
    want += [torch.zeros(16), torch.zeros(16), lin.weight, lin.bias]
    got = list(model.parameters())
    assert len(got) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def _audio(batch: int, samples: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    audio = torch.round(3000 * torch.randn(batch, samples, generator=g))
    paddings = torch.zeros(batch, samples)
    for i in range(1, batch):
        paddings[i, samples - i * samples // (2 * batch) :] = 1
    return audio, paddings


@pytest.mark.parametrize(
    "build,cfg",
    [
        (conformer.build_conformer, TINY_CONFORMER),
        (conformer.build_conformer, {**TINY_CONFORMER, "activation": "gelu"}),
        (deepspeech.build_deepspeech, TINY_DEEPSPEECH),
        (deepspeech.build_deepspeech, {**TINY_DEEPSPEECH, "layernorm_everywhere": True}),
    ],
)
def test_shapes_gradients_and_padding_invariance(build, cfg):
    torch.manual_seed(0)
    model = build(cfg)
    audio, paddings = _audio(3, 8000)  # 48 frames -> 24 -> 12
    logits, out_pad = model(audio, paddings)
    assert logits.shape == (3, 12, 11) and out_pad.shape == (3, 12)
    # Output paddings: frame paddings subsampled twice by 2 (out[t] = frames[4t]).
    frames = paddings.unfold(1, 401, 160).amin(-1)
    assert torch.equal(out_pad, frames[:, ::2][:, ::2])
    (logits * (1 - out_pad)[..., None]).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing
    # Whatever lies under the audio padding changes nothing (eval and train).
    noisy = audio + 5000 * paddings * torch.randn_like(audio)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(audio, paddings)[0], model(noisy, paddings)[0])
    model.train()
    for x in (audio, noisy):
        torch.manual_seed(1)
        with torch.no_grad():
            out = model(x, paddings)[0]
        if x is audio:
            first = out
    assert torch.equal(first, out)


def test_eval_is_deterministic_and_train_draws():
    torch.manual_seed(0)
    model = conformer.build_conformer(TINY_CONFORMER).eval()
    audio, paddings = _audio(2, 8000)
    state = torch.get_rng_state()
    with torch.no_grad():
        a = model(audio, paddings)[0]
    assert torch.equal(state, torch.get_rng_state())  # eval: no SpecAugment, no dropout
    model.train()
    with torch.no_grad():
        b = model(audio, paddings, dropout_rate=0.0)[0]
    assert not torch.equal(state, torch.get_rng_state())  # SpecAugment drew
    assert not torch.allclose(a, b)


def test_masked_batch_norm_uses_valid_frames_only():
    bn = conformer.MaskedBatchNorm(4, momentum=0.001, epsilon=0.001)
    with torch.no_grad():
        bn.scale.copy_(torch.tensor([0.5, 0.0, -0.5, 1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    x = torch.randn(3, 7, 4)
    paddings = torch.zeros(3, 7)
    paddings[1, 4:] = 1
    paddings[2, 1:] = 1
    x_pad = x + 100 * paddings[..., None]  # garbage at pads
    valid = x[paddings == 0]  # [n, 4]
    want = F.batch_norm(valid, None, None, 1 + bn.scale, bn.bias, training=True, eps=0.001)
    out = bn(x_pad, paddings)
    torch.testing.assert_close(out[paddings == 0], want, rtol=1e-5, atol=1e-5)
    assert torch.all(out[paddings == 1] == 0)
    mean, var = valid.mean(0), valid.var(0, unbiased=False)
    torch.testing.assert_close(bn.running_mean, 0.001 * mean)
    torch.testing.assert_close(bn.running_var, 0.999 + 0.001 * var)
    # update_running_stats False (the reference's update_batch_norm=False): stats stay.
    set_running_stats_update(bn, False)
    before = bn.running_mean.clone(), bn.running_var.clone()
    torch.testing.assert_close(bn(x_pad, paddings), out)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    set_running_stats_update(bn, True)
    # Eval normalises with the running statistics.
    bn.eval()
    scale = (1 + bn.scale) / torch.sqrt(bn.running_var + 0.001)
    want = (x - bn.running_mean) * scale + bn.bias
    torch.testing.assert_close(bn(x, paddings)[paddings == 0], want[paddings == 0])


def test_deepspeech_batch_norm_switches(full_deepspeech):
    bns = [m for m in full_deepspeech.modules() if isinstance(m, deepspeech.BatchNorm)]
    assert len(bns) == 9 and all(b.update_running_stats and b.sync_across_ranks for b in bns)
    set_running_stats_update(full_deepspeech, False)
    assert not any(b.update_running_stats for b in bns)
    set_running_stats_update(full_deepspeech, True)


def test_attention_matches_a_hand_written_softmax():
    torch.manual_seed(0)
    cfg = conformer.ConformerConfig(**{**TINY_CONFORMER, "attention_temperature": 1.6})
    attn = conformer.MHSAwithQS(cfg)
    with torch.no_grad():
        attn.qs.scale.normal_()
    x = torch.randn(2, 5, 16)
    pad = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]).bool()
    q, k, v = attn.in_proj(x).split(16, dim=2)
    q = q.view(2, 5, 2, 8) * (1.442695041 * F.softplus(attn.qs.scale))
    k, v = k.view(2, 5, 2, 8), v.view(2, 5, 2, 8)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(8)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    heads = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(2, 5, 16)
    want = attn.out_proj(1.6 * heads)  # the temperature scales the attention *output*
    torch.testing.assert_close(attn(x, pad), want, rtol=1e-5, atol=1e-6)


def test_gelu_variant_uses_tanh_gelu_in_ff_and_exact_gelu_in_conv():
    cfg = conformer.ConformerConfig(**{**TINY_CONFORMER, "activation": "gelu"})
    x = torch.linspace(-3, 3, 13)
    ff, conv = conformer.FeedForwardModule(cfg), conformer.ConvolutionBlock(cfg)
    assert torch.equal(ff.act(x), F.gelu(x, approximate="tanh"))
    assert torch.equal(conv.act(x), F.gelu(x))


def test_positional_embedding_values():
    pe = conformer.AddPositionalEmbedding(8)(3)  # [1, 3, 8]; timescales 1 ... 1e4
    inv = torch.tensor([1.0, 10 ** (-4 / 3), 10 ** (-8 / 3), 1e-4])
    pos = torch.arange(3.0)[:, None] * inv
    torch.testing.assert_close(pe[0], torch.cat([pos.sin(), pos.cos()], dim=1))


def test_subsampling_same_padding_shapes():
    conv = conformer.Conv2dSubsampling(1, 3, "relu", paddings_kernel=True)
    for t, f in ((1998, 80), (999, 40), (7, 5)):
        y, p = conv(torch.randn(1, 1, t, f), torch.zeros(1, t))
        assert y.shape == (1, 3, math.ceil(t / 2), math.ceil(f / 2)) and p.shape == (1, y.shape[2])


def test_lstm_outputs_ignore_padding():
    torch.manual_seed(0)
    cfg = deepspeech.DeepspeechConfig(**TINY_DEEPSPEECH)
    rnn = deepspeech.BatchRNN(cfg).eval()
    x = torch.randn(2, 9, 16)
    paddings = torch.zeros(2, 9)
    paddings[1, 6:] = 1
    out = rnn(x, paddings, torch.tensor([9, 6]))
    assert torch.all(out[1, 6:] == 0)
    # Example 1 alone, cut to its 6 valid frames, gives the same outputs (no padding seen).
    alone = rnn.lstm(rnn.bn_normalization_layer(x[1:, :6], paddings[1:, :6]))[0]
    torch.testing.assert_close(out[1:, :6], alone, rtol=1e-5, atol=1e-6)


def test_config_errors_name_the_keys():
    with pytest.raises(ValueError, match=r"missing \['vocab_size'\].*unknown \['vocab'\]"):
        conformer.build_conformer(
            {**{k: v for k, v in CONFORMER.items() if k != "vocab_size"}, "vocab": 3}
        )
    with pytest.raises(ValueError, match="activation='relu'"):
        conformer.build_conformer({**CONFORMER, "activation": "relu"})
    with pytest.raises(ValueError, match="unknown \\['use_gelu'\\]"):
        deepspeech.build_deepspeech({**DEEPSPEECH, "use_gelu": True})


@pytest.mark.slow
@pytest.mark.parametrize(
    "build,cfg",
    [(conformer.build_conformer, TINY_CONFORMER), (deepspeech.build_deepspeech, TINY_DEEPSPEECH)],
)
def test_torch_compile_matches_eager(build, cfg):
    torch.manual_seed(0)
    model = build(cfg).eval()
    audio, paddings = _audio(2, 8000)
    with torch.no_grad():
        want = model(audio, paddings)[0]
        got = torch.compile(model)(audio, paddings)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _sync_bn_rank(rank: int, init_file: str, result_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, paddings = _bn_batch()
        x = x[rank : rank + 1].clone().requires_grad_()
        bn = deepspeech.BatchNorm(4, momentum=0.1, epsilon=0.001)
        out = bn(x, paddings[rank : rank + 1])
        (out * torch.arange(1.0, 5.0)).square().sum().backward()
        torch.save(
            {"out": out.detach(), "grad": x.grad, "mean": bn.running_mean}, f"{result_file}{rank}"
        )
    finally:
        dist.destroy_process_group()


def _bn_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
    paddings = torch.zeros(2, 6)
    paddings[1, 2:] = 1
    return x, paddings


@pytest.mark.slow
def test_deepspeech_batch_norm_statistics_are_global_across_ranks(tmp_path):
    """Two gloo ranks with one example each = one process with both (outputs, input grads)."""
    import torch.multiprocessing as mp

    mp.spawn(_sync_bn_rank, args=(str(tmp_path / "init"), str(tmp_path / "r")), nprocs=2)
    x, paddings = _bn_batch()
    x.requires_grad_()
    bn = deepspeech.BatchNorm(4, momentum=0.1, epsilon=0.001)
    out = bn(x, paddings)
    (out * torch.arange(1.0, 5.0)).square().sum().backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"r{rank}")
        torch.testing.assert_close(got["out"], out[rank : rank + 1].detach())
        torch.testing.assert_close(got["grad"], x.grad[rank : rank + 1])
        torch.testing.assert_close(got["mean"], bn.running_mean)
