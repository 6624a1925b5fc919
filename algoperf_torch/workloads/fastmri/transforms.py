"""The per-slice fastMRI transform: undersampling mask, zero-filled reconstruction, normalisation.

As the reference's ``_process_example`` [algoperf/workloads/fastmri/input_pipeline.py]
(WORKLOADS.md §3.4), for one k-space slice [640, W] complex64 and its 320x320 target:

1. column mask: the ``int(W * 0.08)`` centre columns from ``(W - num_low + 1) // 2``, plus every
   other column where u < (W / 4 - num_low) / (W - num_low), u ~ U[0, 1) per column;
2. masked k-space -> ifftshift -> orthonormal 2-D inverse FFT -> fftshift (the reference's TF
   ``ifft2d`` divides by 640 * W and then multiplies by sqrt(640 * W): ``norm="ortho"``);
3. centre crop to 320x320, magnitude, normalise by the zero-filled image's mean and
   population std, clip to [-6, 6]; the target is normalised with the same mean/std and clipped.

The uniform draws u are TensorFlow's stateless uniform with the Philox4x32-10 counter-based
generator, written from TensorFlow's documented algorithm (``GenerateKey``'s seed scramble with
key 0x3ec8f720/0x02461e29, ``PhiloxRandom``'s ten rounds, ``Uint32ToFloat``): element i of the
draw is word i % 4 of the block at counter + i // 4, mapped to mantissa / 2**23. For a seed (a,
b) this is ``tf.random.stateless_uniform((W,), seed=(a, b))`` on CPU/GPU (not checked against
TensorFlow itself, which is not installed here). The reference's eval splits use seed (0, 0)
for every slice, so our eval masks follow the same algorithm; training seeds are derived
differently (see ``data.py``), since the reference's depend on tf.data's interleave order.

    python -m pytest tests/test_fastmri_transforms.py
"""

from __future__ import annotations

import numpy as np
import torch

CENTER_FRACTION = 0.08
ACCELERATION = 4.0
CROP = 320
CLIP = 6.0

_M32 = 0xFFFF_FFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # key schedule increments (Weyl sequence)
_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32 with 10 rounds on a [4, n] array of 32-bit counter words -> [4, n] outputs."""
    c = [np.asarray(w, dtype=np.uint64) & _M32 for w in counter]
    k0, k1 = int(key[0]) & _M32, int(key[1]) & _M32
    for _ in range(10):
        p0 = np.uint64(_PHILOX_M[0]) * c[0]
        p1 = np.uint64(_PHILOX_M[1]) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(_M32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(_M32)
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
        k0, k1 = (k0 + _PHILOX_W[0]) & _M32, (k1 + _PHILOX_W[1]) & _M32
    return np.stack(c).astype(np.uint32)


def _key_counter(seed: tuple[int, int]) -> tuple[tuple[int, int], list[int]]:
    """TF's seed scramble: one Philox block of the seed words under a fixed key."""
    s0, s1 = (int(s) & 0xFFFF_FFFF_FFFF_FFFF for s in seed)
    words = np.array([[s0 & _M32], [s0 >> 32], [s1 & _M32], [s1 >> 32]], dtype=np.uint64)
    mix = philox4x32_10(words, _SCRAMBLE_KEY)[:, 0]
    return (int(mix[0]), int(mix[1])), [0, 0, int(mix[2]), int(mix[3])]


def stateless_uniform(n: int, seed: tuple[int, int]) -> np.ndarray:
    """``n`` float32 draws in [0, 1) (TF's ``stateless_uniform((n,), seed)``, Philox)."""
    key, counter = _key_counter(seed)
    groups = np.arange((n + 3) // 4, dtype=np.uint64)
    low = np.uint64(counter[0]) + groups  # 128-bit counter + group, carried into word 1
    carry = low >> np.uint64(32)
    words = np.stack(
        [
            low & np.uint64(_M32),
            (np.uint64(counter[1]) + carry) & np.uint64(_M32),
            np.full_like(groups, counter[2]),
            np.full_like(groups, counter[3]),
        ]
    )
    bits = philox4x32_10(words, key).T.reshape(-1)[:n]  # element i: word i % 4 of group i // 4
    return (bits & np.uint32(0x7FFFFF)).astype(np.float32) / np.float32(1 << 23)


def column_mask(num_cols: int, seed: tuple[int, int]) -> np.ndarray:
    """[W] float32 0/1 mask: the centre columns plus the random ones (float32 arithmetic)."""
    w = np.float32(num_cols)
    num_low = int(w * np.float32(CENTER_FRACTION))  # truncation, as tf.cast to int32
    mask = np.zeros(num_cols, dtype=np.float32)
    pad = (num_cols - num_low + 1) // 2
    mask[pad : pad + num_low] = 1.0
    prob = (w / np.float32(ACCELERATION) - np.float32(num_low)) / (w - np.float32(num_low))
    random = (stateless_uniform(num_cols, seed) < prob).astype(np.float32)
    return np.maximum(mask, random)


def zero_filled_crop(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Centre 320x320 of ``fftshift(ifft2(ifftshift(kspace * mask), norm="ortho"))``.

    Computed as two 1-D passes that skip what the crop and the mask make zero or unused: the
    column pass transforms only the kept columns (a quarter to a third of them) and the row pass
    only the 320 rows that survive the crop; the same sums as the full 2-D transform (a 2-D FFT
    is these two passes), 2-3x fewer operations.
    """
    rows, cols = kspace.shape
    kept = torch.nonzero(mask).flatten()
    top, left = (rows - CROP) // 2, (cols - CROP) // 2
    x = kspace[:, kept] * mask[kept].to(kspace.dtype)  # [rows, kept]
    x = torch.fft.fftshift(
        torch.fft.ifft(torch.fft.ifftshift(x, dim=0), dim=0, norm="ortho"), dim=0
    )[top : top + CROP]  # [320, kept]
    full = x.new_zeros((CROP, cols))
    full[:, kept] = x
    y = torch.fft.fftshift(
        torch.fft.ifft(torch.fft.ifftshift(full, dim=1), dim=1, norm="ortho"), dim=1
    )
    return y[:, left : left + CROP]


def process_slice(
    kspace: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs [320, 320], targets [320, 320], mean [], std []) of one slice, all float32.

    Args:
        kspace: [640, W] complex64 k-space of the slice.
        target: [320, 320] float32 ``reconstruction_esc`` of the slice.
        mask: [W] column mask (0/1).
    """
    kspace = torch.as_tensor(kspace)
    target = torch.as_tensor(target)
    mask = torch.as_tensor(mask, dtype=torch.float32)
    image = zero_filled_crop(kspace, mask)  # [320, 320] complex
    magnitude = torch.sqrt(image.real**2 + image.imag**2)
    mean = magnitude.mean()
    std = magnitude.std(correction=0)  # population std, as tf.math.reduce_std
    inputs = ((magnitude - mean) / std).clamp(-CLIP, CLIP)
    targets = ((target - mean) / std).clamp(-CLIP, CLIP)
    return inputs, targets, mean, std
