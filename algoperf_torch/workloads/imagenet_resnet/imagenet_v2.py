"""The ImageNet-v2 test split's eval preprocessing, as the reference's TensorFlow path computes it.

The reference reads ImageNet-v2 through TFDS and ``preprocess_for_eval``
[algoperf/workloads/imagenet_resnet/imagenet_v2.py, .../imagenet_jax/input_pipeline.py
``_decode_and_center_crop``]: a centre crop of side int(224/256 · min(h, w)) at offset
((dim − crop + 1) // 2), then ``tf.image.resize(..., BICUBIC)`` (no antialiasing, float output,
neither clipped nor rounded) to 224x224. TF's bicubic with half-pixel centres is Keys' cubic
with a = −0.5, fractional positions quantised to 1/1024, out-of-image taps dropped and the
remaining weights renormalised (tensorflow/core/kernels/image/resize_bicubic_op.cc). We build
those weights as two small matrices and resize with two matmuls (float32), which reproduces TF
up to float rounding; torch's own bicubic (a = −0.75, clamped taps) would not.

    python -m pytest tests/test_imagenet_data.py -k bicubic
"""

from __future__ import annotations

import functools

import numpy as np
import torch

_TABLE_SIZE = 1024


@functools.lru_cache(maxsize=1)
def _keys_cubic_table(a: float = -0.5) -> np.ndarray:
    """TF's coefficient table: [i, 0] weight of the near tap, [i, 1] of the far tap."""
    x = np.arange(_TABLE_SIZE + 1, dtype=np.float64) / _TABLE_SIZE
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    x1 = x + 1.0
    far = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    return np.stack([near, far], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=64)
def tf_bicubic_weights(in_size: int, out_size: int) -> torch.Tensor:
    """[out_size, in_size] float32 matrix W with out = W @ in along one axis (TF semantics)."""
    table = _keys_cubic_table()
    scale = np.float32(in_size) / np.float32(out_size)
    w = np.zeros((out_size, in_size), dtype=np.float32)
    for o in range(out_size):
        loc = (np.float32(o) + np.float32(0.5)) * scale - np.float32(0.5)
        base = int(np.floor(loc))
        offset = int(np.rint((loc - np.float32(base)) * np.float32(_TABLE_SIZE)))
        taps = (
            (base - 1, table[offset, 1]),
            (base, table[offset, 0]),
            (base + 1, table[_TABLE_SIZE - offset, 0]),
            (base + 2, table[_TABLE_SIZE - offset, 1]),
        )
        inside = [(i, wt) for i, wt in taps if 0 <= i < in_size]
        total = np.float32(sum(wt for _, wt in inside))
        for i, wt in inside:
            w[o, i] += wt / total if abs(total) > 0 else wt
    return torch.from_numpy(w)


def tf_bicubic_resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """[C, H, W] (any dtype) -> [C, size, size] float32, as TF2 ``tf.image.resize`` BICUBIC."""
    _, h, w = img.shape
    wy = tf_bicubic_weights(h, size)  # [size, H]
    wx = tf_bicubic_weights(w, size)  # [size, W]
    return wy @ img.float() @ wx.T  # [C, size, W] -> [C, size, size]


def center_crop_box(height: int, width: int, image_size: int, resize_size: int) -> tuple[int, ...]:
    """(top, left, side, side) of the reference's padded centre crop."""
    side = int(np.float32(image_size / resize_size) * np.float32(min(height, width)))
    return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def preprocess_for_eval(img: torch.Tensor, image_size: int, resize_size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> float32 [3, image_size, image_size] in 0..255 (not yet normalised)."""
    top, left, h, w = center_crop_box(img.shape[1], img.shape[2], image_size, resize_size)
    return tf_bicubic_resize(img[:, top : top + h, left : left + w], image_size)
