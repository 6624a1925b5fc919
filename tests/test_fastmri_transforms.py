"""fastMRI per-slice transform: mask layout and distribution, TF's Philox, against numpy.

python -m pytest tests/test_fastmri_transforms.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algoperf_torch.workloads.fastmri.transforms import (
    column_mask,
    philox4x32_10,
    process_slice,
    stateless_uniform,
    zero_filled_crop,
)

EPS32 = float(np.finfo(np.float32).eps)


def test_philox_known_answers():
    # Random123's published known-answer vectors for philox4x32-10 (kat_vectors).
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for counter, key, expected in cases:
        out = philox4x32_10(np.array(counter, dtype=np.uint64).reshape(4, 1), key)[:, 0]
        assert tuple(int(x) for x in out) == expected


def test_stateless_uniform_layout():
    u = stateless_uniform(10, (3, 4))
    assert u.dtype == np.float32 and ((0 <= u) & (u < 1)).all()
    # Element i is word i % 4 of block i // 4: a longer draw extends a shorter one.
    np.testing.assert_array_equal(stateless_uniform(7, (3, 4)), u[:7])
    assert not np.array_equal(stateless_uniform(10, (3, 5)), u)
    # Values are multiples of 2**-23 (mantissa bits of the 32-bit word).
    assert np.all((u * (1 << 23)) == np.round(u * (1 << 23)))


@pytest.mark.parametrize("width,num_low", [(368, 29), (372, 29), (320, 25), (640, 51)])
def test_mask_centre_columns_and_rate(width, num_low):
    masks = np.stack([column_mask(width, (s, 7)) for s in range(400)])
    pad = (width - num_low + 1) // 2
    assert (masks[:, pad : pad + num_low] == 1).all()
    assert set(np.unique(masks)) <= {0.0, 1.0}
    outside = np.concatenate([masks[:, :pad], masks[:, pad + num_low :]], axis=1)
    prob = (width / 4 - num_low) / (width - num_low)
    n = outside.size
    assert abs(outside.mean() - prob) < 5 * np.sqrt(prob * (1 - prob) / n)
    np.testing.assert_array_equal(column_mask(width, (3, 7)), masks[3])  # deterministic


def numpy_transform(kspace, target, mask):
    """A line-by-line numpy transcription of the reference's ``_process_example`` (float64)."""
    masked = kspace.astype(np.complex128) * mask.reshape(1, -1)
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(masked, axes=(0, 1))), axes=(0, 1))
    image = image * np.sqrt(kspace.shape[0] * kspace.shape[1])  # TF's ifft2d divides by N
    top, left = (kspace.shape[0] - 320) // 2, (kspace.shape[1] - 320) // 2
    image = image[top : top + 320, left : left + 320]
    magnitude = np.sqrt(image.real**2 + image.imag**2)
    mean, std = magnitude.mean(), magnitude.std()
    return (
        np.clip((magnitude - mean) / std, -6, 6),
        np.clip((target - mean) / std, -6, 6),
        mean,
        std,
    )


def known_slice(width: int, seed: int = 0):
    """k-space of a known complex image (a smooth blob, a bright rim and noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, 640), np.linspace(-1, 1, width), indexing="ij")
    image = np.exp(-(yy**2 + xx**2) / 0.1) * (1 + 0.3j) + 0.05 * rng.standard_normal((640, width))
    image[300:340, 150:200] += 8.0  # bright enough that some pixels clip at +6
    image *= 1e-4  # fastMRI's scale
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho")).astype(
        np.complex64
    )
    top, left = 160, (width - 320) // 2
    target = np.abs(image[top : top + 320, left : left + 320]).astype(np.float32)
    return image, kspace, target


@pytest.mark.parametrize("width", [368, 372])
def test_transform_matches_numpy_transcription(width):
    _, kspace, target = known_slice(width)
    mask = column_mask(width, (0, 0))
    inputs, targets, mean, std = process_slice(kspace, target, mask)
    e_in, e_t, e_mean, e_std = numpy_transform(kspace, target, mask)
    assert inputs.shape == targets.shape == (320, 320) and inputs.dtype == torch.float32
    # float32 FFT of size 640 x W: error ~ eps * log2(N) relative to the image's norm; the
    # normalised values are O(1) (at most 6), so 1e3 eps is a wide bound that any bug exceeds.
    assert abs(float(mean) - e_mean) <= 1e3 * EPS32 * e_mean
    assert abs(float(std) - e_std) <= 1e3 * EPS32 * e_std
    np.testing.assert_allclose(inputs.numpy(), e_in, rtol=0, atol=1e3 * EPS32 * 6)
    np.testing.assert_allclose(targets.numpy(), e_t, rtol=0, atol=1e3 * EPS32 * 6)
    assert float(inputs.max()) == 6.0 and float(targets.max()) == 6.0  # clipped


@pytest.mark.parametrize("width", [368, 372, 640])
def test_zero_filled_crop_equals_the_full_2d_transform(width):
    gen = torch.Generator().manual_seed(width)
    kspace = torch.randn(640, width, dtype=torch.complex64, generator=gen)
    mask = torch.from_numpy(column_mask(width, (1, width)))
    full = torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(kspace * mask, dim=(0, 1)), norm="ortho"), dim=(0, 1)
    )
    left = (width - 320) // 2
    expected = full[160:480, left : left + 320]
    # Same sums in another order: float32 rounding, relative to the values' O(1) scale.
    torch.testing.assert_close(zero_filled_crop(kspace, mask), expected, rtol=0, atol=1e-5)


def test_fully_sampled_kspace_gives_back_the_image():
    image, kspace, target = known_slice(368, seed=1)
    inputs, targets, mean, std = process_slice(kspace, target, np.ones(368, np.float32))
    # With every column kept, the zero-filled image is the original: inputs == targets.
    magnitude = np.abs(image[160:480, 24:344])
    assert abs(float(mean) - magnitude.mean()) <= 1e3 * EPS32 * magnitude.mean()
    torch.testing.assert_close(inputs, targets, rtol=0, atol=1e-3)
