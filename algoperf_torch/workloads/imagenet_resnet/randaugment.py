"""RandAugment of the reference's PyTorch ImageNet pipeline, on uint8 image tensors.

The reference applies it to PIL images [algoperf/workloads/imagenet_resnet/imagenet_pytorch/
randaugment.py]; here the same 16 ops, magnitudes, signs and draw order run on [3, H, W] uint8
tensors through ``torchvision.transforms.v2.functional`` (nearest interpolation, fill 128).
Per op: index ~ U{0..15}; for the five geometric ops a second draw decides the sign. Solarize's
threshold of 256 makes it a no-op on uint8 images, as in the reference. Cutout's centre is drawn
in (1, W] x (1, H] (the reference's ``np.random.uniform(W)`` reads W as the lower bound) and it
fills the inclusive square (x0, y0)-(x1, y1) as PIL's rectangle does. Randomness comes from the
``torch.Generator`` passed in, never from the global RNGs.

Tensor and PIL kernels of the geometric and sharpness ops may differ by rounding or by half a
pixel at borders; the distribution of augmentations is the reference's.

    python -m pytest tests/test_imagenet_data.py -k randaugment
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

# (name, magnitude, signed), in the reference's order: the op index is a draw over this list.
OPS: tuple[tuple[str, float, bool], ...] = (
    ("ShearX", 0.3, True),
    ("ShearY", 0.3, True),
    ("TranslateX", 100.0, True),
    ("TranslateY", 100.0, True),
    ("Rotate", 30.0, True),
    ("Brightness", 1.9, False),
    ("Color", 1.9, False),
    ("Contrast", 1.9, False),
    ("Sharpness", 1.9, False),
    ("Posterize", 4.0, False),
    ("Solarize", 256.0, False),
    ("SolarizeAdd", 110.0, False),
    ("AutoContrast", 0.0, False),
    ("Equalize", 0.0, False),
    ("Invert", 0.0, False),
    ("Cutout", 40.0, False),
)
FILL = [128.0, 128.0, 128.0]
NEAREST = TF.InterpolationMode.NEAREST


def cutout(img: torch.Tensor, pad_size: int, gen: torch.Generator) -> torch.Tensor:
    """Grey (128) square of side 2*pad_size+1, shifted (not shrunk) at the left/top border."""
    _, h, w = img.shape
    u = torch.rand(2, generator=gen, dtype=torch.float64).tolist()
    cx, cy = w - (w - 1) * u[0], h - (h - 1) * u[1]  # uniform on (1, W], (1, H]
    x0, y0 = int(max(0.0, cx - pad_size)), int(max(0.0, cy - pad_size))
    x1, y1 = int(min(w, x0 + 2 * pad_size)), int(min(h, y0 + 2 * pad_size))
    img = img.clone()
    img[:, y0 : y1 + 1, x0 : x1 + 1] = 128  # PIL rectangles include both corners
    return img


def solarize_add(img: torch.Tensor, addition: int, threshold: int = 128) -> torch.Tensor:
    added = (img.to(torch.int16) + addition).clamp(0, 255).to(torch.uint8)
    return torch.where(img < threshold, added, img)


def apply_op(img: torch.Tensor, name: str, magnitude: float, gen: torch.Generator) -> torch.Tensor:
    """One RandAugment op on a [3, H, W] uint8 tensor."""
    if name in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        shear_xy = [shear, 0.0] if name == "ShearX" else [0.0, shear]
        return TF.affine(
            img,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=shear_xy,
            interpolation=NEAREST,
            fill=FILL,
            center=[0, 0],
        )
    if name in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if name == "TranslateX" else [0, int(magnitude)]
        return TF.affine(
            img,
            angle=0.0,
            translate=shift,
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=NEAREST,
            fill=FILL,
        )
    if name == "Rotate":
        return TF.rotate(img, magnitude, interpolation=NEAREST, fill=FILL)
    if name == "Brightness":
        return TF.adjust_brightness(img, magnitude)
    if name == "Color":
        return TF.adjust_saturation(img, magnitude)
    if name == "Contrast":
        return TF.adjust_contrast(img, magnitude)
    if name == "Sharpness":
        return TF.adjust_sharpness(img, magnitude)
    if name == "Posterize":
        return TF.posterize(img, int(magnitude))
    if name == "Solarize":
        return torch.where(img < magnitude, img, 255 - img)
    if name == "SolarizeAdd":
        return solarize_add(img, int(magnitude))
    if name == "AutoContrast":
        return TF.autocontrast(img)
    if name == "Equalize":
        return TF.equalize(img)
    if name == "Invert":
        return TF.invert(img)
    if name == "Cutout":
        return cutout(img, int(magnitude), gen)
    raise ValueError(f"unknown RandAugment op {name!r}")


def rand_augment(img: torch.Tensor, gen: torch.Generator, num_ops: int = 2) -> torch.Tensor:
    """``num_ops`` ops drawn uniformly (with replacement), fixed magnitudes, random signs."""
    for _ in range(num_ops):
        name, magnitude, signed = OPS[int(torch.randint(len(OPS), (1,), generator=gen))]
        if signed and int(torch.randint(2, (1,), generator=gen)):
            magnitude = -magnitude
        img = apply_op(img, name, magnitude, gen)
    return img
