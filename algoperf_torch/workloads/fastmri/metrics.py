"""fastMRI loss and metrics: per-example L1, and SSIM exactly as the reference computes it.

Loss [fastmri_pytorch/workload.py ``loss_fn``]: L1 averaged over the 320x320 pixels of each
example, multiplied by the mask; ``n_valid_examples`` = mask sum (or the batch size).

SSIM [fastmri_pytorch/ssim.py, a port of ``skimage.metrics.structural_similarity``]: outputs and
targets are de-normalised with the batch's per-example ``mean``/``std``; the data range is the
per-example ``volume_max`` (0, i.e. a padding row, replaced by 1); 7x7 box window applied
separably (rows then columns, symmetric boundary padding), K1 = 0.01, K2 = 0.03, sample
covariance (x 49/48), the SSIM map averaged after cropping 3 pixels from every border, the result
clamped to [-1, 1]. Hand-written (no library computes this batched on the device with these exact
float32 steps); the reference runs it per example under ``torch.vmap``, this runs the whole
batch at once with the same operations in the same order.

    python -m pytest tests/test_fastmri_metrics.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from algoperf_torch.spec import Batch, LossOutput, WorkloadConfig

WIN_SIZE = 7
K1, K2 = 0.01, 0.03


def l1_loss(
    config: WorkloadConfig | None,
    label_batch: torch.Tensor,
    logits_batch: torch.Tensor,
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Per-example mean absolute error over the pixels; ``label_smoothing`` is ignored."""
    per_example = F.l1_loss(logits_batch, label_batch, reduction="none").mean(dim=(1, 2))  # [B]
    if mask_batch is not None:
        # In place in the reference (float32 stays float32 under a float64 mask).
        per_example = per_example * mask_batch.to(per_example.dtype)
        n_valid = mask_batch.sum()
    else:
        n_valid = torch.as_tensor(len(per_example), device=per_example.device)
    return LossOutput(per_example.sum(), n_valid, per_example)


def _symmetric_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices that pad a length-``n`` axis by ``pad`` on both sides, edge repeated
    (numpy's ``symmetric``, torchvision's ``padding_mode='symmetric'``): d c b a | a b c d."""
    i = torch.arange(-pad, n + pad, device=device)
    i = torch.where(i < 0, -i - 1, i)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def uniform_filter(images: torch.Tensor, size: int = WIN_SIZE) -> torch.Tensor:
    """Box mean over ``size`` x ``size`` windows of [B, H, W] images, symmetric boundaries.

    As the reference's ``_uniform_filter``: a 1-D sum along the last axis (``conv1d`` with a
    ones kernel, divided by ``size``), then the same along the other axis.
    """
    pad = size // 2
    kernel = torch.ones(1, 1, size, dtype=images.dtype, device=images.device)

    def along_last(x: torch.Tensor) -> torch.Tensor:  # [B, R, C] -> [B, R, C]
        b, r, c = x.shape
        x = x[..., _symmetric_index(c, pad, x.device)]  # [B, R, C + 2 pad]
        return (F.conv1d(x.reshape(b * r, 1, c + 2 * pad), kernel) / size).reshape(b, r, c)

    x = along_last(images)
    return along_last(x.transpose(1, 2)).transpose(1, 2)


def structural_similarity(
    im1: torch.Tensor, im2: torch.Tensor, data_range: torch.Tensor
) -> torch.Tensor:
    """Mean SSIM of each pair of [B, H, W] images, with a per-example ``data_range`` [B]."""
    num_points = WIN_SIZE**2
    cov_norm = num_points / (num_points - 1)  # sample covariance
    ux, uy = uniform_filter(im1), uniform_filter(im2)
    uxx, uyy, uxy = uniform_filter(im1 * im1), uniform_filter(im2 * im2), uniform_filter(im1 * im2)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    data_range = data_range.view(-1, 1, 1)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux**2 + uy**2 + c1
    b2 = vx + vy + c2
    s = (a1 * a2) / (b1 * b2)
    pad = (WIN_SIZE - 1) // 2  # ignore the filter radius around the edges
    return s[:, pad:-pad, pad:-pad].mean(dim=(1, 2))


def ssim(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    volume_max: torch.Tensor,
) -> torch.Tensor:
    """Per-example SSIM [B] of normalised [B, H, W] outputs against targets (reference ``ssim``)."""
    # A padding row has volume_max 0, which would make the SSIM NaN.
    volume_max = torch.where(volume_max == 0, torch.ones_like(volume_max), volume_max)
    mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    values = structural_similarity(outputs * std + mean, targets * std + mean, volume_max)
    return values.clamp(-1.0, 1.0)  # the theoretical range of SSIM


class FastMRIMetrics:
    """Summed ``ssim`` and ``loss`` over the real (weight 1) examples of a split.

    As the reference's ``_eval_model``: the SSIM is computed on the unpadded rows only; the L1
    loss is masked by the weights. Sums are kept in float64 (the reference adds float32 batch
    sums on the device).
    """

    def __init__(self) -> None:
        self._ssim = torch.zeros((), dtype=torch.float64)
        self._loss = torch.zeros((), dtype=torch.float64)

    def update(self, outputs: torch.Tensor, batch: Batch) -> None:
        targets = batch["targets"]
        weights = batch.get("weights")
        if weights is None:
            keep = slice(None)
            weights = torch.ones(len(outputs), device=outputs.device)
        else:
            keep = weights > 0
        values = ssim(
            outputs[keep],
            targets[keep],
            batch["mean"][keep],
            batch["std"][keep],
            batch["volume_max"][keep],
        )
        loss = l1_loss(None, targets, outputs, weights).summed
        self._ssim += values.double().sum().cpu()
        self._loss += loss.double().cpu()

    def state(self) -> dict[str, torch.Tensor]:
        return {"ssim": self._ssim, "loss": self._loss}

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]:
        return {k: float(v) / num_examples for k, v in state.items()}


def make_metric(config: WorkloadConfig) -> FastMRIMetrics:
    return FastMRIMetrics()
