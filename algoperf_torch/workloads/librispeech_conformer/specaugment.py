"""SpecAugment time and frequency masks on log-mel features (Park et al. 2019, arXiv 1904.08779).

The reference's ``SpecAug`` [algoperf/workloads/librispeech_conformer/librispeech_pytorch/
spectrum_augmenter.py] (WORKLOADS.md §6.1 step 2), applied by both speech models in training
mode only. Mask lengths and starts are drawn from the torch global RNG on the features' device
in the reference's order (time lengths [B, M_t], time starts [B, M_t], frequency lengths
[B, M_f], frequency starts [B, M_f]) and turned into integers with the reference's float32
arithmetic, so the same seed masks the same frames and bins. Masked entries are multiplied by 0.

    python -m pytest tests/test_speech_frontend.py -k specaug
"""

from __future__ import annotations

import torch
from torch import nn


def _masks(
    batch_size: int,
    choose_range: torch.Tensor,
    mask_size: int,
    max_length: int | None,
    multiplicity: int,
    max_ratio: float,
    device: torch.device,
) -> torch.Tensor:
    """[B, mask_size] float32, 0 inside any of ``multiplicity`` random spans, else 1.

    Each span's length is ⌊U·max_length⌋ (``max_length`` None: ⌊U·ratio·range⌋), capped at
    max(⌊ratio·range⌋, 1); its start is ⌊U·(range − length + 1)⌋ [spectrum_augmenter.py
    ``_get_mask``].
    """
    if max_length is not None and max_length > 0:
        max_len = max_length * torch.ones(batch_size, device=device)
    else:
        max_len = choose_range * max_ratio
    length = (max_len[:, None] * torch.rand(batch_size, multiplicity, device=device)).long()
    choose_range = choose_range[:, None].expand(batch_size, multiplicity)
    length_bound = (max_ratio * choose_range).long().clamp(min=1)
    length = torch.minimum(length, length_bound)
    start_u = torch.rand(batch_size, multiplicity, device=device)
    start = (start_u * (choose_range - length + 1)).long()  # [B, M]
    end = start + length - 1  # inclusive; length 0 covers nothing
    positions = torch.arange(mask_size, device=device)  # [S]
    inside = (positions >= start[..., None]) & (positions <= end[..., None])  # [B, M, S]
    return 1.0 - inside.any(dim=1).long()


class SpecAugment(nn.Module):
    """``time_mask_count`` time masks, then ``freq_mask_count`` frequency masks (no parameters).

    Args:
        freq_mask_count, freq_mask_max_bins: number of frequency masks and their maximum
            length (lengths 0 … max − 1, as ⌊U·max⌋).
        time_mask_count: number of time masks.
        time_mask_max_frames: fixed maximum time-mask length; ignored when
            ``use_dynamic_time_mask_max_frames`` (the reference's setting), where the maximum is
            ``time_mask_max_ratio`` × the example's number of non-padded frames.
        time_mask_max_ratio: cap on a time mask's length as a fraction of the valid frames.
        time_masks_per_frame: must be 0.0: the reference's code path for a positive value fails
            (an einsum over a bool mask), so no run of the reference ever used one.
    """

    def __init__(
        self,
        freq_mask_count: int,
        freq_mask_max_bins: int,
        time_mask_count: int,
        time_mask_max_frames: int,
        time_mask_max_ratio: float,
        time_masks_per_frame: float,
        use_dynamic_time_mask_max_frames: bool,
    ) -> None:
        super().__init__()
        if time_masks_per_frame != 0.0:
            raise ValueError(
                f"time_masks_per_frame={time_masks_per_frame}: only 0.0 is supported (the "
                "reference's spectrum_augmenter.py fails for positive values)"
            )
        self.freq_mask_count = freq_mask_count
        self.freq_mask_max_bins = freq_mask_max_bins
        self.time_mask_count = time_mask_count
        self.time_mask_max_frames = time_mask_max_frames
        self.time_mask_max_ratio = time_mask_max_ratio
        self.use_dynamic_time_mask_max_frames = use_dynamic_time_mask_max_frames

    def _time_mask(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        no_length = self.time_mask_max_frames == 0 and not self.use_dynamic_time_mask_max_frames
        if no_length or self.time_mask_max_ratio <= 0.0 or self.time_mask_count == 0:
            return x
        batch_size, num_frames, _ = x.shape
        keep = _masks(
            batch_size,
            choose_range=lengths,
            mask_size=num_frames,
            max_length=None if self.use_dynamic_time_mask_max_frames else self.time_mask_max_frames,
            multiplicity=self.time_mask_count,
            max_ratio=self.time_mask_max_ratio,
            device=x.device,
        )
        return x * keep[:, :, None]

    def _frequency_mask(self, x: torch.Tensor) -> torch.Tensor:
        if self.freq_mask_max_bins == 0 or self.freq_mask_count == 0:
            return x
        batch_size, _, num_freq = x.shape
        keep = _masks(
            batch_size,
            choose_range=num_freq * torch.ones(batch_size, device=x.device),
            mask_size=num_freq,
            max_length=self.freq_mask_max_bins,
            multiplicity=self.freq_mask_count,
            max_ratio=1.0,
            device=x.device,
        )
        return x * keep[:, None, :]

    def forward(
        self, features: torch.Tensor, paddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, F, bins], paddings [B, F] (1 = pad) -> masked features, same paddings."""
        lengths = (1 - paddings).sum(dim=1).long()  # valid frames per example
        features = self._time_mask(features, lengths)
        return self._frequency_mask(features), paddings
