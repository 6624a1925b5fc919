"""Shampoo against explicit matrix math: roots, blocking, grafting, the JAX-baseline setting.

python -m pytest tests/test_optim_shampoo.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from algoperf_torch.optimizers.shampoo import (
    Shampoo,
    block_slices,
    jax_paper_baseline_config,
    matrix_inverse_root,
    merge_small_dims,
)

F64 = torch.float64
# The roots are checked against scipy's Schur-Pade fractional power, another algorithm on another
# LAPACK (numpy/scipy's OpenBLAS vs torch's MKL), so the agreement depends on conditioning: an
# inverse p-th root of a matrix perturbed by LAPACK's backward error ~n u ||A|| moves by about
# (1/p) n u cond(A + eps I) relative to its norm (float64 u = 1.1e-16, n <= 24). A singular
# accumulator with a tiny eps has cond ~ ||A|| / eps: with eps = 1e-6 (cond 3e7) scipy alone was
# off by 1e-6 on OpenBLAS's SkylakeX kernels. So eps is sized to the spectrum (the singular
# accumulators of one or two gradients have eigenvalues 0..22) and the merge test accumulates
# to full rank: every rooted matrix has cond <= MAX_COND (measured <= 119), which _root asserts,
# and TOL = 1e-9 then allows a constant of 1e-9 / (24 * 1e3 * 1.1e-16) ~ 400 over that estimate,
# on any correct BLAS/LAPACK. An exponent off by 0.1% or eps off by 1e-5 fails.
EPS = 0.1
MAX_COND = 1e3
TOL = 1e-9


def _root(a: np.ndarray, p: float) -> np.ndarray:
    """(A + eps I)^(-1/p) with scipy."""
    shifted = a + EPS * np.eye(len(a))
    assert np.linalg.cond(shifted) <= MAX_COND, "ill-conditioned test input: see TOL"
    return np.real(scipy.linalg.fractional_matrix_power(shifted, -1.0 / p))


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    """Normwise agreement to TOL: a small entry of a result carries its norm's absolute error."""
    np.testing.assert_allclose(got, ref, rtol=TOL, atol=TOL * np.abs(ref).max())


def _pure(**kw) -> dict:
    """Plain Shampoo: no filtering, momentum, decay, grafting or bias correction; roots every step."""
    base = dict(
        betas=(0.0, 1.0),
        epsilon=EPS,
        grafting_type="NONE",
        precondition_frequency=1,
        start_preconditioning_step=1,
        use_bias_correction=False,
        use_merge_dims=False,
        preconditioner_dtype=F64,
    )
    base.update(kw)
    return base


def _step(opt: Shampoo, p: torch.nn.Parameter, g: torch.Tensor) -> torch.Tensor:
    before = p.detach().clone()
    p.grad = g.clone()
    opt.step()
    return before - p.detach()


def test_merge_and_block_helpers() -> None:
    assert merge_small_dims((64, 64, 3, 3), 1024) == (64, 576)
    assert merge_small_dims((1, 10, 1, 3), 1024) == (30,)
    assert merge_small_dims((2048, 1000), 1024) == (2048, 1000)
    assert merge_small_dims((4, 5), 0) == (4, 5)
    assert merge_small_dims((1,), 8) == (1,)
    assert block_slices((5, 7), 3) == [
        (slice(r, min(r + 3, 5)), slice(c, min(c + 3, 7))) for r in (0, 3) for c in (0, 3, 6)
    ]


def test_matrix_inverse_root_matches_scipy() -> None:
    g = np.random.default_rng(0).standard_normal((6, 4))
    a = g @ g.T  # rank 4: singular, the epsilon matters
    got = matrix_inverse_root(torch.tensor(a), 0.25, EPS, dtype=F64).numpy()
    _close(got, _root(a, 4))


def test_one_matrix_step_is_left_and_right_inverse_fourth_roots() -> None:
    g = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    p = torch.nn.Parameter(torch.zeros(4, 6, dtype=F64))
    opt = Shampoo([p], lr=0.5, **_pure())
    got = _step(opt, p, g).numpy()
    gn = g.numpy()
    ref = 0.5 * _root(gn @ gn.T, 4) @ gn @ _root(gn.T @ gn, 4)
    _close(got, ref)
    # second step: the factors accumulate (beta2 = 1: a sum)
    g2 = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    got2 = _step(opt, p, g2).numpy()
    g2n = g2.numpy()
    left, right = gn @ gn.T + g2n @ g2n.T, gn.T @ gn + g2n.T @ g2n
    _close(got2, 0.5 * _root(left, 4) @ g2n @ _root(right, 4))


def test_vector_is_full_matrix_adagrad_and_3d_uses_every_mode() -> None:
    v = torch.randn(5, dtype=F64, generator=torch.Generator().manual_seed(2))
    p = torch.nn.Parameter(torch.zeros(5, dtype=F64))
    got = _step(Shampoo([p], lr=1.0, **_pure()), p, v).numpy()
    _close(got, _root(np.outer(v, v), 2) @ v.numpy())

    g = torch.randn(2, 3, 4, dtype=F64, generator=torch.Generator().manual_seed(3))
    p3 = torch.nn.Parameter(torch.zeros(2, 3, 4, dtype=F64))
    got3 = _step(Shampoo([p3], lr=1.0, **_pure()), p3, g).numpy()
    gn = g.numpy()
    roots = [
        _root(np.tensordot(gn, gn, axes=([j for j in range(3) if j != k],) * 2), 6)
        for k in range(3)
    ]
    ref = np.einsum("abc,ai,bj,ck->ijk", gn, *roots)
    _close(got3, ref)


def test_small_dims_merge_into_one_vector() -> None:
    """With merging, a 4x6 matrix (24 <= 1024) is one 24-vector: full-matrix AdaGrad."""
    gen = torch.Generator().manual_seed(8)
    p = torch.nn.Parameter(torch.zeros(4, 6, dtype=F64))
    opt = Shampoo([p], lr=1.0, **_pure(use_merge_dims=True))
    # 48 gradients: the 24x24 accumulator has full rank (cond ~ 26), so every direction of the
    # full-matrix preconditioner counts, not only the span of two gradients.
    gs = [torch.randn(4, 6, dtype=F64, generator=gen) for _ in range(48)]
    for g in gs:
        got = _step(opt, p, g).numpy().ravel()
    assert opt.state[p]["factors"][0][0].shape == (24, 24)
    flat = [g.numpy().ravel() for g in gs]
    acc = sum(np.outer(f, f) for f in flat)
    assert np.linalg.matrix_rank(acc) == 24
    _close(got, _root(acc, 2) @ flat[-1])


def test_blocking_splits_large_dims_into_independent_blocks() -> None:
    g = torch.randn(5, 7, dtype=F64, generator=torch.Generator().manual_seed(4))
    p = torch.nn.Parameter(torch.zeros(5, 7, dtype=F64))
    opt = Shampoo([p], lr=1.0, max_preconditioner_dim=3, **_pure())
    got = _step(opt, p, g).numpy()
    shapes = [[f.shape for f in fs] for fs in opt.state[p]["factors"]]
    assert len(shapes) == 6 and shapes[0] == [(3, 3), (3, 3)] and shapes[-1] == [(2, 2), (1, 1)]
    gn = g.numpy()
    for rows in (slice(0, 3), slice(3, 5)):
        for cols in (slice(0, 3), slice(3, 6), slice(6, 7)):
            b = gn[rows, cols]
            ref = _root(b @ b.T, 4) @ b @ _root(b.T @ b, 4)
            _close(got[rows, cols], ref)


def test_adam_grafting_sets_each_blocks_norm() -> None:
    gen = torch.Generator().manual_seed(5)
    p = torch.nn.Parameter(torch.zeros(4, 6, dtype=F64))
    opt = Shampoo(
        [p],
        lr=1.0,
        max_preconditioner_dim=3,
        **_pure(grafting_type="ADAM", grafting_beta2=0.9, grafting_epsilon=1e-8),
    )
    v = torch.zeros(4, 6, dtype=F64)
    for t in range(1, 4):
        g = torch.randn(4, 6, dtype=F64, generator=gen)
        got = _step(opt, p, g)
        v = 0.9 * v + 0.1 * g * g
        adam = g / ((v / (1 - 0.9**t)).sqrt() + 1e-8)
        for r in (slice(0, 3), slice(3, 4)):
            for c in (slice(0, 3), slice(3, 6)):
                torch.testing.assert_close(got[r, c].norm(), adam[r, c].norm(), rtol=1e-9, atol=0)


def test_grafting_method_runs_before_start_step() -> None:
    p = torch.nn.Parameter(torch.zeros(3, 3, dtype=F64))
    opt = Shampoo(
        [p],
        lr=1.0,
        **_pure(grafting_type="SGD", start_preconditioning_step=3, precondition_frequency=10),
    )
    g = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(_step(opt, p, g), g)  # step 1 < start: plain SGD
    _step(opt, p, g)
    assert opt.state[p]["inv_factors"][0][0].abs().sum() == 0  # no root yet
    _step(opt, p, g)  # step 3 == start: roots computed
    assert opt.state[p]["inv_factors"][0][0].abs().sum() > 0


def test_jax_paper_baseline_setting_is_the_derived_update() -> None:
    b1, b2, wd, lr = 0.9, 0.999, 0.1, 0.01
    gen = torch.Generator().manual_seed(7)
    p0 = torch.randn(4, 5, dtype=F64, generator=gen)
    p = torch.nn.Parameter(p0.clone())
    opt = Shampoo([p], lr=lr, **jax_paper_baseline_config(b1, b2, wd))
    ref, d, m = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for _ in range(4):
        g = torch.randn(4, 5, dtype=F64, generator=gen)
        p.grad = g.clone()
        opt.step()
        n = g / (g.norm() + 1e-16)
        d = b2 * d + (1 - b2) * n * n
        u = n / (d.sqrt() + 1e-8) + wd * ref
        m = b1 * m + (1 - b1) * u
        ref = ref - lr * ((1 - b1) * u + b1 * m)
    torch.testing.assert_close(p.detach(), ref, rtol=1e-12, atol=1e-14)
    assert "factors" not in opt.state[p]


def test_invalid_arguments_name_the_value() -> None:
    q = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="grafting_type='LION'"):
        Shampoo(q, grafting_type="LION")
    with pytest.raises(ValueError, match=r"betas=\(1.0, 1.0\)"):
        Shampoo(q, betas=(1.0, 1.0))
    with pytest.raises(ValueError, match="epsilon=0.0"):
        Shampoo(q, epsilon=0.0)
    assert math.isinf(
        Shampoo(q, start_preconditioning_step=math.inf).defaults["start_preconditioning_step"]
    )
