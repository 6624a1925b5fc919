"""fastMRI L1 loss and SSIM: against scikit-image, the loss contract, padding and empty batches.

python -m pytest tests/test_fastmri_metrics.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as skimage_ssim

from algoperf_torch.workloads.fastmri.metrics import (
    K2,
    FastMRIMetrics,
    l1_loss,
    ssim,
    uniform_filter,
)

EPS32 = float(np.finfo(np.float32).eps)


def knee_like(gen: torch.Generator, b: int, h: int, w: int) -> torch.Tensor:
    """Smooth blobs on a dark background plus noise: the structure of a magnitude image."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    images = []
    for _ in range(b):
        img = torch.zeros(h, w)
        for _ in range(4):
            cy, cx, r = (torch.rand(3, generator=gen) * torch.tensor([1.4, 1.4, 0.5])).tolist()
            img += torch.exp(-((yy - cy + 0.7) ** 2 + (xx - cx + 0.7) ** 2) / (0.05 + r**2))
        images.append(img + 0.05 * torch.rand(h, w, generator=gen))
    return torch.stack(images)


def cases(seed: int, b: int = 4, h: int = 40, w: int = 56):
    """(outputs, targets, mean, std, volume_max) in the normalised space of the pipeline."""
    gen = torch.Generator().manual_seed(seed)
    if seed % 2:
        raw_t = knee_like(gen, b, h, w) * 1e-4
        raw_o = raw_t + 2e-5 * torch.randn(b, h, w, generator=gen)
    else:
        raw_t = torch.rand(b, h, w, generator=gen) * 3e-4
        raw_o = torch.rand(b, h, w, generator=gen) * 3e-4
    mean = raw_o.mean(dim=(1, 2))
    std = raw_o.std(dim=(1, 2), correction=0)
    norm = lambda x: (x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)  # noqa: E731
    volume_max = raw_t.amax(dim=(1, 2)) * 1.1
    return norm(raw_o), norm(raw_t), mean, std, volume_max


def skimage_reference(o, t, mean, std, volume_max) -> np.ndarray:
    """scikit-image with the reference's settings, in float64 on the de-normalised images."""
    values = []
    for i in range(len(o)):
        x = o[i].double() * std[i].double() + mean[i].double()
        y = t[i].double() * std[i].double() + mean[i].double()
        dr = float(volume_max[i]) if float(volume_max[i]) != 0 else 1.0
        values.append(
            skimage_ssim(
                x.numpy(),
                y.numpy(),
                data_range=dr,
                win_size=7,
                gaussian_weights=False,
                use_sample_covariance=True,
                K1=0.01,
                K2=0.03,
            )
        )
    return np.clip(np.array(values), -1, 1)


@pytest.mark.parametrize("seed", range(6))
def test_ssim_matches_scikit_image(seed):
    o, t, mean, std, vmax = cases(seed)
    expected = skimage_reference(o, t, mean, std, vmax)
    # float64: the same algorithm, so agreement to rounding (the values are O(1)).
    got64 = ssim(o.double(), t.double(), mean.double(), std.double(), vmax.double()).numpy()
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-10)
    # float32 (what the workload runs): the variances come from E[x^2] - E[x]^2, whose rounding
    # error is at most ~16 eps max(x^2); through a2/b2 (both >= c2 = (K2 * range)^2) it moves
    # each SSIM pixel by at most ~100 eps max(x^2) / c2.
    got32 = ssim(o, t, mean, std, vmax).double().numpy()
    for i in range(len(o)):
        peak = max(
            float((o[i] * std[i] + mean[i]).abs().max()),
            float((t[i] * std[i] + mean[i]).abs().max()),
        )
        bound = 100 * EPS32 * peak**2 / (K2 * float(vmax[i])) ** 2
        assert abs(got32[i] - expected[i]) <= bound, (i, got32[i], expected[i], bound)


@pytest.mark.slow  # scikit-image on a 320x320 slice: a few seconds on a loaded machine
def test_ssim_full_size_slice_and_identical_images():
    o, t, mean, std, vmax = cases(1, b=1, h=320, w=320)
    expected = skimage_reference(o, t, mean, std, vmax)
    got = ssim(o.double(), t.double(), mean.double(), std.double(), vmax.double()).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    same = ssim(t, t, mean, std, vmax)
    torch.testing.assert_close(same, torch.ones(1), rtol=0, atol=1e-5)


def test_uniform_filter_is_a_symmetric_box_mean():
    from scipy.ndimage import uniform_filter as scipy_uniform

    x = torch.rand(2, 9, 11, dtype=torch.float64)
    expected = np.stack([scipy_uniform(a, size=7, mode="reflect") for a in x.numpy()])
    np.testing.assert_allclose(uniform_filter(x).numpy(), expected, rtol=0, atol=1e-14)


def test_padding_rows_are_not_scored_and_zero_volume_max_is_safe():
    o, t, mean, std, vmax = cases(3, b=5)
    real = ssim(o[:3], t[:3], mean[:3], std[:3], vmax[:3])
    pad = lambda x: torch.cat([x[:3], torch.zeros_like(x[3:])])  # noqa: E731
    batch = {
        "targets": pad(t),
        "mean": pad(mean),
        "std": pad(std),
        "volume_max": pad(vmax),
        "weights": torch.tensor([1.0, 1, 1, 0, 0], dtype=torch.float64),
    }
    metric = FastMRIMetrics()
    metric.update(pad(o), batch)
    state = metric.state()
    torch.testing.assert_close(state["ssim"], real.double().sum(), rtol=0, atol=1e-6)
    per_example = (o[:3] - t[:3]).abs().mean(dim=(1, 2))
    torch.testing.assert_close(state["loss"], per_example.double().sum(), rtol=1e-6, atol=0)
    assert metric.compute(state, 3) == {
        "ssim": float(state["ssim"]) / 3,
        "loss": float(state["loss"]) / 3,
    }
    # A padding row (volume_max 0 -> range 1, std 0) gives a finite SSIM, never NaN.
    assert torch.isfinite(ssim(o[:1] * 0, t[:1] * 0, mean[:1] * 0, std[:1] * 0, vmax[:1] * 0)).all()
    # No weights: every row counts.
    unweighted = FastMRIMetrics()
    unweighted.update(o[:3], {k: v[:3] for k, v in batch.items() if k != "weights"})
    torch.testing.assert_close(unweighted.state()["ssim"], state["ssim"])


def test_all_padding_batch_adds_nothing():
    o, t, mean, std, vmax = cases(0, b=2)
    metric = FastMRIMetrics()
    zeros = torch.zeros(2)
    metric.update(
        o,
        {
            "targets": t,
            "mean": zeros,
            "std": zeros,
            "volume_max": zeros,
            "weights": torch.zeros(2, dtype=torch.float64),
        },
    )
    assert float(metric.state()["ssim"]) == 0.0 and float(metric.state()["loss"]) == 0.0


def test_l1_loss_contract():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(3, 4, 5, generator=gen), torch.randn(3, 4, 5, generator=gen)
    by_hand = (logits - labels).abs().mean(dim=(1, 2))
    out = l1_loss(None, labels, logits)
    torch.testing.assert_close(out.per_example, by_hand)
    assert out.n_valid_examples.item() == 3
    torch.testing.assert_close(out.summed, by_hand.sum())
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    masked = l1_loss(None, labels, logits, mask, label_smoothing=0.2)  # smoothing is ignored
    assert masked.per_example.dtype == torch.float32 and masked.n_valid_examples.item() == 2
    torch.testing.assert_close(masked.per_example, by_hand * mask.float())
    torch.testing.assert_close(masked.summed, by_hand[0] + by_hand[2])
