"""Every optimizer in the table: reference formulas, resume, convergence, configs, bad hparams.

The reference formulas below are written out with plain float64 torch math from RULES.md §5
(never calling the code under test).

    python -m pytest tests/test_optimizers.py
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from algoperf_torch.optimizers import COMMON_HPARAMS, OPTIMIZERS, get_optimizer_info
from algoperf_torch.optimizers.adafactor import Adafactor
from algoperf_torch.optimizers.lamb import Lamb
from algoperf_torch.optimizers.nadamw import NAdamW

CONF = Path(__file__).resolve().parents[1] / "algoperf_torch" / "conf" / "optimizer"
SPACES = Path(__file__).resolve().parents[1] / "algoperf_torch" / "optimizers" / "search_spaces"
LR, B1, B2, WD, EPS = 0.03, 0.9, 0.99, 0.1, 1e-8
SHAPES = [(3, 4), (5,), (2, 3, 2)]
TOY_HPARAMS = dict(
    learning_rate=0.01,
    one_minus_beta1=0.1,
    beta2=0.999,
    weight_decay=0.01,
    warmup_factor=0.05,
    decay_steps_factor=0.9,
    end_factor=0.01,
    rho=0.05,
    r=0.75,
    weight_lr_power=2.0,
    precondition_frequency=3,
    start_preconditioning_step=2,
)


def _problem(seed: int = 0, steps: int = 4):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    grads = [
        [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES] for _ in range(steps)
    ]
    return params, grads


def _run(opt_factory, params, grads):
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = opt_factory(ps)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = g.clone()
        opt.step()
    return [p.detach() for p in ps]


def _close(a, b, tol=1e-12):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol)


# ---- reference formulas ---------------------------------------------------------------------


def _adam_like(params, grads, nesterov: bool):
    out = []
    for i, p in enumerate(params):
        p, m, v = p.clone(), torch.zeros_like(p), torch.zeros_like(p)
        for t, gs in enumerate(grads, start=1):
            g = gs[i]
            p = p * (1 - LR * WD)
            m = B1 * m + (1 - B1) * g
            v = B2 * v + (1 - B2) * g * g
            num = B1 * m + (1 - B1) * g if nesterov else m
            p = p - LR / (1 - B1**t) * num / (v.sqrt() / math.sqrt(1 - B2**t) + EPS)
        out.append(p)
    return out


def test_adamw_matches_reference_formula() -> None:
    params, grads = _problem()
    build = get_optimizer_info("adamw").build
    h = dict(
        learning_rate=LR, one_minus_beta1=1 - B1, beta2=B2, weight_decay=WD, warmup_factor=0.05
    )
    _close(_run(lambda ps: build(ps, h), params, grads), _adam_like(params, grads, False))


def test_nadamw_matches_reference_formula() -> None:
    params, grads = _problem()
    got = _run(
        lambda ps: NAdamW(ps, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD), params, grads
    )
    _close(got, _adam_like(params, grads, True))


def test_nadamw_cache_blocks_change_nothing(monkeypatch) -> None:
    """Slicing the CPU update into cache-sized pieces is bitwise the whole-tensor update."""
    from algoperf_torch.optimizers import nadamw

    gen = torch.Generator().manual_seed(3)
    shapes = [(37, 11), (5,), (300,), (4, 3, 5, 5)]
    params = [torch.randn(s, generator=gen) for s in shapes]
    params[3] = params[3].contiguous(memory_format=torch.channels_last)  # goes whole
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(3)]
    for gs in grads:
        gs[3] = gs[3].contiguous(memory_format=torch.channels_last)

    def run():
        return _run(
            lambda ps: NAdamW(ps, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD), params, grads
        )

    monkeypatch.setattr(nadamw, "CPU_SLICE", 1 << 30)
    whole = run()
    # Slices of 64 (a multiple of every SIMD width): the same vector/scalar split as whole tensors.
    monkeypatch.setattr(nadamw, "CPU_SLICE", 64)
    monkeypatch.setattr(nadamw, "CPU_GROUP", 128)
    groups = list(nadamw.cache_blocks([params, params, params, params], 64, 128))
    assert sum(t.numel() for g in groups for t in g[0]) == sum(p.numel() for p in params)
    assert len(groups) > len(params)
    sliced = run()
    assert all(torch.equal(a, b) for a, b in zip(whole, sliced, strict=True))


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_and_nesterov_match_reference_formula(nesterov: bool) -> None:
    params, grads = _problem()
    name = "nesterov" if nesterov else "momentum"
    h = dict(
        learning_rate=LR,
        one_minus_beta1=1 - B1,
        weight_decay=WD,
        warmup_factor=0.05,
        decay_steps_factor=0.9,
        end_factor=0.01,
    )
    got = _run(lambda ps: OPTIMIZERS[name].build(ps, h), params, grads)
    ref = []
    for i, p in enumerate(params):
        p, b = p.clone(), None
        for gs in grads:
            g = gs[i] + WD * p
            b = g.clone() if b is None else B1 * b + g
            p = p - LR * ((g + B1 * b) if nesterov else b)
        ref.append(p)
    _close(got, ref)


def test_lamb_matches_optax_formula() -> None:
    params, grads = _problem()
    got = _run(lambda ps: Lamb(ps, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD), params, grads)
    ref = []
    for i, p in enumerate(params):
        p, m, v = p.clone(), torch.zeros_like(p), torch.zeros_like(p)
        for t, gs in enumerate(grads, start=1):
            g = gs[i]
            m = B1 * m + (1 - B1) * g
            v = B2 * v + (1 - B2) * g * g
            u = (m / (1 - B1**t)) / ((v / (1 - B2**t)).sqrt() + EPS) + WD * p
            r = p.norm() / u.norm()
            p = p - LR * r * u
        ref.append(p)
    _close(got, ref)


def test_lamb_trust_ratio_is_one_for_zero_params() -> None:
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    p.grad = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    Lamb([p], lr=0.1, betas=(0.9, 0.999), eps=0.0).step()
    torch.testing.assert_close(p.detach(), -0.1 * torch.sign(p.grad))


def test_adafactor_matches_reference_formula() -> None:
    params, grads = _problem(steps=5)
    got = _run(
        lambda ps: Adafactor(ps, lr=LR, beta1=B1, decay_adam=0.99, weight_decay=WD), params, grads
    )
    ref = []
    for i, p in enumerate(params):
        p, m = p.clone(), torch.zeros_like(p)
        r = c = v = None
        for t, gs in enumerate(grads, start=1):
            g = gs[i]
            bh = 0.99 * (1 - 0.99 ** (t - 1)) / (1 - 0.99**t)
            q = g * g + 1e-30
            if g.ndim >= 2:
                r = (1 - bh) * q.mean(-1) if r is None else bh * r + (1 - bh) * q.mean(-1)
                c = (1 - bh) * q.mean(-2) if c is None else bh * c + (1 - bh) * q.mean(-2)
                vhat = (r / r.mean(-1, keepdim=True)).unsqueeze(-1) * c.unsqueeze(-2)
            else:
                v = (1 - bh) * q if v is None else bh * v + (1 - bh) * q
                vhat = v
            u = g / vhat.sqrt()
            u = LR * u / max(1.0, u.pow(2).mean().sqrt().item())
            m = B1 * m + (1 - B1) * u
            p = p - LR * WD * p - m
        ref.append(p)
    _close(got, ref)


# ---- every table entry ----------------------------------------------------------------------


# Learning rates that make the toy problem move within 60 steps (SGD and LAMB need larger ones).
TOY_LR = {"momentum": 0.3, "nesterov": 0.3, "lamb": 0.1, "shampoo": 0.05}


def _toy(name: str, seed: int = 0):
    info = OPTIMIZERS[name]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    h = {k: v for k, v in TOY_HPARAMS.items() if k in info.hparams}
    h["learning_rate"] = TOY_LR.get(name, h["learning_rate"])
    groups = info.param_groups(model, h) if info.param_groups else model.parameters()
    opt = info.build(groups, h)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, info.schedule(h, 40))
    x = torch.randn(48, 6, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (48,), generator=torch.Generator().manual_seed(2))

    def loss_fn():
        return torch.nn.functional.cross_entropy(model(x), y)

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    def train_step():
        if info.train_eval_modes:
            opt.train()
        loss = closure()
        opt.step(closure) if info.uses_closure else opt.step()
        sched.step()
        return loss.item()

    return model, opt, sched, train_step, loss_fn


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dict_round_trip_resumes_bit_identically(name: str) -> None:
    model, opt, sched, step, _ = _toy(name)
    for _ in range(5):
        step()
    buf = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf
    )
    for _ in range(6):
        step()
    expected = [p.detach().clone() for p in model.parameters()]

    model2, opt2, sched2, step2, _ = _toy(name, seed=123)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    for _ in range(6):
        step2()
    for a, b in zip(expected, model2.parameters()):
        assert torch.equal(a, b.detach()), name


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_toy_problem_converges(name: str) -> None:
    model, opt, _, step, loss_fn = _toy(name)
    first = step()
    for _ in range(60):
        step()
    if OPTIMIZERS[name].train_eval_modes:
        opt.eval()
    with torch.no_grad():
        assert loss_fn().item() < 0.8 * first, name


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "key,value", [("learning_rate", -0.1), ("one_minus_beta1", 1.5), ("one_minus_beta1", 0.0)]
)
def test_invalid_hparams_raise_naming_the_value(name: str, key: str, value: float) -> None:
    info = OPTIMIZERS[name]
    h = {k: v for k, v in TOY_HPARAMS.items() if k in info.hparams}
    h[key] = value
    with pytest.raises(ValueError, match=f"{key}={value}"):
        info.build([torch.nn.Parameter(torch.zeros(2))], h)


@pytest.mark.parametrize(
    "name", [n for n in sorted(OPTIMIZERS) if "beta2" in OPTIMIZERS[n].hparams]
)
def test_beta2_outside_unit_interval_is_rejected(name: str) -> None:
    info = OPTIMIZERS[name]
    h = {k: v for k, v in TOY_HPARAMS.items() if k in info.hparams}
    h["beta2"] = 1.0
    with pytest.raises(ValueError, match="beta2=1.0"):
        info.build([torch.nn.Parameter(torch.zeros(2))], h)


def test_unknown_optimizer_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="nadamw"):
        get_optimizer_info("adam")


# ---- table, YAML and search spaces agree --------------------------------------------------------


def _space_keys(file: Path) -> list[str]:
    raw = json.loads(file.read_text())
    if isinstance(raw, list):
        return sorted({k for point in raw for k in point})
    return list(raw)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_table_yaml_and_search_space_agree(name: str) -> None:
    file = CONF / f"{name}.yaml"
    assert file.is_file(), f"no config {file}"
    text = file.read_text()
    assert text.startswith(f"# python -m algoperf_torch optimizer={name}\n")
    cfg = yaml.safe_load(text)
    assert cfg["name"] == name
    accepted = set(OPTIMIZERS[name].hparams) | set(COMMON_HPARAMS)
    assert set(cfg["hparams"]) <= accepted, set(cfg["hparams"]) - accepted
    assert all(isinstance(v, int) and v > 0 for v in cfg["batch_sizes"].values())
    assert (SPACES / cfg["search_space"]).is_file()
    OPTIMIZERS[name].build([torch.nn.Parameter(torch.zeros(2, 2))], cfg["hparams"])


def test_every_search_space_belongs_to_an_optimizer() -> None:
    for file in SPACES.glob("*.json"):
        owner = next(
            (n for n in sorted(OPTIMIZERS, key=len, reverse=True) if file.stem.startswith(n)), None
        )
        assert owner is not None, file.name
        accepted = set(OPTIMIZERS[owner].hparams) | set(COMMON_HPARAMS)
        assert set(_space_keys(file)) <= accepted, (file.name, set(_space_keys(file)) - accepted)
