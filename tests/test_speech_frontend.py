"""LibriSpeech log-mel frontend and SpecAugment against plain numpy transcriptions of the formulas.

python -m pytest tests/test_speech_frontend.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from algoperf_torch.workloads.librispeech_conformer import frontend
from algoperf_torch.workloads.librispeech_conformer.specaugment import SpecAugment

FIXTURES = Path(__file__).parent / "fixtures" / "librispeech"
EPS32 = float(np.finfo(np.float32).eps)


def vowel_like(num_samples: int, seed: int) -> np.ndarray:
    """A voiced signal with formants, a pitch glide, a noise burst and silence, in int16 units."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16_000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.8 * t) + 10 * seed
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    formants = np.array([700.0, 1200.0, 2600.0])
    x = np.zeros(num_samples)
    for k in range(1, 60):
        amp = sum(1 / (1 + ((k * f0 - f) / 90) ** 2) for f in formants)
        x += amp * np.sin(k * phase) * (k * f0 < 7900)
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    burst = slice(num_samples // 2, num_samples // 2 + 1600)
    x[burst] += 2.0 * rng.standard_normal(1600)
    x[: num_samples // 10] = 0.01 * rng.standard_normal(num_samples // 10)  # near-silence
    return np.round(x / np.abs(x).max() * 20_000)


def real_speech() -> list[np.ndarray]:
    """The espeak-ng utterances of the data tests, where present (int16 samples as float64)."""
    import soundfile

    return [
        soundfile.read(path, dtype="int16")[0].astype(np.float64)
        for path in sorted(FIXTURES.glob("*.flac"))
    ]


def np_mel_matrix() -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix`` written out in float64: [257, 80]."""

    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)

    bins_mel = mel(np.linspace(0.0, 8000.0, 257)[1:])[:, None]
    edges = np.linspace(mel(125.0), mel(7600.0), 82)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    w = np.maximum(
        0.0,
        np.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center)),
    )
    return np.concatenate([np.zeros((1, 80)), w])


def np_logmel(audio: np.ndarray, paddings: np.ndarray) -> tuple[np.ndarray, ...]:
    """WORKLOADS.md §6.1 step 1 in float64 numpy: (features, frame paddings, mel energies)."""
    x = audio * (1 - paddings) / 32768.0
    num_frames = (audio.shape[1] - 401) // 160 + 1
    idx = 160 * np.arange(num_frames)[:, None] + np.arange(401)[None, :]
    frames = x[:, idx]  # [B, F, 401]
    emph = np.concatenate(
        [0.03 * frames[..., :1], frames[..., 1:400] - 0.97 * frames[..., :399]], -1
    )
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    power = np.abs(np.fft.rfft(emph * window, 512, axis=-1)) ** 2
    mel = power @ np_mel_matrix()
    feats = (np.log(np.maximum(mel, 1e-5)) - np.array(frontend.LIBRISPEECH_MEAN)) / np.array(
        frontend.LIBRISPEECH_STD
    )
    return feats, paddings[:, idx].min(-1), mel, power.sum(-1)


def test_mel_matrix_matches_the_tf_formula():
    ours = frontend.mel_weight_matrix().double().numpy()
    assert ours.shape == (257, 80)
    assert np.all(ours[0] == 0)  # DC bin excluded (HTK)
    # Conditioning: each slope is (mel(f) - edge) / band width; float32 mel values up to
    # mel(8 kHz) carry ~eps·2840 absolute error, divided by the ~32.6-mel band width.
    mel_max = 1127.0 * math.log(1 + 8000 / 700)
    width = (1127.0 * math.log(1 + 7600 / 700) - 1127.0 * math.log(1 + 125 / 700)) / 81
    np.testing.assert_allclose(ours, np_mel_matrix(), rtol=0, atol=8 * EPS32 * mel_max / width)
    assert 0.99 < ours.max() <= 1.0
    assert np.all((ours > 0).sum(0) >= 1)  # every mel band covers at least one FFT bin


def _signals() -> list[np.ndarray]:
    return [vowel_like(24_000, seed) for seed in range(2)] + real_speech()


def test_frontend_matches_numpy_on_speech():
    signals = _signals()
    length = max(len(s) for s in signals) + 1000
    audio = np.zeros((len(signals), length))
    paddings = np.ones((len(signals), length))
    for i, s in enumerate(signals):
        audio[i, : len(s)], paddings[i, : len(s)] = s, 0
    audio[:, -1000:] = 123.0  # garbage under the padding must not matter
    fe = frontend.LogMelFrontend()
    audio32 = torch.tensor(audio, dtype=torch.float32)
    paddings32 = torch.tensor(paddings, dtype=torch.float32)
    feats, frame_pad = fe(audio32, paddings32)
    want, want_pad, mel64, energy = np_logmel(audio, paddings)
    assert feats.shape == want.shape == (len(signals), (length - 401) // 160 + 1, 80)
    np.testing.assert_array_equal(frame_pad.numpy(), want_pad)
    # Mel energies: float32 framing + rFFT (9 butterfly stages) + the 257-term mel sum err by
    # at most ~64 eps of the frame's total power Σ_f |X_f|² (mel weights are <= 1).
    mel32 = (fe.stft(audio32, paddings32)[0] @ fe.mel_weights).double().numpy()
    tol = np.broadcast_to(64 * EPS32 * energy[..., None], mel64.shape)
    assert np.all(np.abs(mel32 - mel64) <= tol)
    # Log-mel: where the energy is far above that bound (and the floor), |Δ log| <= 1e-3.
    strong = mel64 > np.maximum(1e3 * tol, 2e-5)
    assert strong.sum() > 2000  # a real share of the speech bins is checked this tightly
    diff = np.abs(feats.double().numpy() - want)
    assert np.all(diff[strong] <= 1e-3 / min(frontend.LIBRISPEECH_STD) + 1e-5)
    # Clearly below the floor, both sit exactly at log(1e-5).
    floor = (mel64 < 0.5e-5) & (mel32 < 0.5e-5)
    assert floor.any() and np.allclose(diff[floor], 0, atol=1e-5)


def test_frame_count_and_paddings():
    audio = torch.zeros(2, 320_000)
    paddings = torch.zeros(2, 320_000)
    paddings[1, 160_000:] = 1
    feats, frame_pad = frontend.LogMelFrontend()(audio, paddings)
    assert feats.shape == (2, 1998, 80)
    # A frame is padding only if all its 401 samples are: frame k covers [160k, 160k + 400].
    first_pad = frame_pad[1].nonzero()[0].item()
    assert 160 * first_pad >= 160_000 and 160 * (first_pad - 1) < 160_000
    assert frame_pad[0].sum() == 0 and frame_pad[1, first_pad:].all()
    # Silence sits at the log floor: (log 1e-5 - mean) / std.
    want = (math.log(1e-5) - torch.tensor(frontend.LIBRISPEECH_MEAN)) / torch.tensor(
        frontend.LIBRISPEECH_STD
    )
    torch.testing.assert_close(feats[0, 5], want)


def test_frontend_rejects_bad_shapes():
    with pytest.raises(ValueError, match="samples >= 401"):
        frontend.LogMelFrontend()(torch.zeros(1, 400), torch.zeros(1, 400))
    with pytest.raises(ValueError, match="equal shapes"):
        frontend.LogMelFrontend()(torch.zeros(1, 1000), torch.zeros(1, 999))


def test_frontend_state_dict_uses_the_reference_names():
    sd = frontend.LogMelFrontend().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "_normalizer_mean": (1, 1, 80, 1),
        "_normalizer_stddev": (1, 1, 80, 1),
        "stft.window": (1, 1, 400, 1),
    }


# --- SpecAugment --------------------------------------------------------------------------------
BASE_SPECAUG = dict(
    freq_mask_count=2,
    freq_mask_max_bins=27,
    time_mask_count=10,
    time_mask_max_frames=40,
    time_mask_max_ratio=0.05,
    time_masks_per_frame=0.0,
    use_dynamic_time_mask_max_frames=True,
)


def loop_specaug(x: torch.Tensor, lengths: list[int], mt: int, mf: int, max_bins: int):
    """WORKLOADS.md §6.1 step 2 as plain loops over the same uniform draws (in draw order)."""
    b, _, bins = x.shape
    u_tl, u_ts, u_fl, u_fs = (torch.rand(b, m) for m in (mt, mt, mf, mf))
    out = x.clone()
    for i in range(b):
        n = lengths[i]
        for m in range(mt):
            max_len = np.float32(n) * np.float32(0.05)  # float32, as torch computes it
            length = min(int(max_len * np.float32(u_tl[i, m])), max(int(max_len), 1))
            start = int(np.float32(u_ts[i, m]) * np.float32(n - length + 1))
            out[i, start : start + length, :] = 0
        for m in range(mf):
            length = min(int(np.float32(max_bins) * np.float32(u_fl[i, m])), bins)
            start = int(np.float32(u_fs[i, m]) * np.float32(bins - length + 1))
            out[i, :, start : start + length] = 0
    return out


@pytest.mark.parametrize("mt,mf", [(10, 2), (15, 4)])
def test_specaug_matches_a_loop_transcription(mt, mf):
    aug = SpecAugment(**{**BASE_SPECAUG, "time_mask_count": mt, "freq_mask_count": mf})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 500, 80, generator=g) + 5.0  # no natural zeros
    lengths = [500, 431, 77, 19, 3, 250]
    paddings = torch.zeros(6, 500)
    for i, n in enumerate(lengths):
        paddings[i, n:] = 1
    for seed in range(5):
        torch.manual_seed(seed)
        got, got_pad = aug(x, paddings)
        after = torch.rand(1)
        torch.manual_seed(seed)
        want = loop_specaug(x, lengths, mt, mf, 27)
        assert torch.equal(after, torch.rand(1))  # same number of draws, in the same order
        assert torch.equal(got, want) and got_pad is paddings
        # Masks stay inside the valid frames; frequency masks cover at most 26 bins each.
        for i, n in enumerate(lengths):
            assert torch.equal(got[i, n:], x[i, n:] * (got[i, n:] != 0))
        zero_bins = (got == 0).all(dim=1).sum(dim=1)
        assert (zero_bins <= 26 * mf).all()


def test_specaug_time_mask_length_is_dynamic():
    # 1,000 valid frames: each of the 10 time masks is < 50 frames; none reach past the valid part.
    aug = SpecAugment(**{**BASE_SPECAUG, "freq_mask_count": 0})
    x = torch.ones(64, 1200, 4)
    paddings = torch.zeros(64, 1200)
    paddings[:, 1000:] = 1
    torch.manual_seed(0)
    out, _ = aug(x, paddings)
    masked = (out[..., 0] == 0).float()
    assert masked[:, 1000:].sum() == 0
    assert masked.sum(1).max() <= 10 * 49
    assert masked.sum() > 0


def test_specaug_off_switches_and_bad_config():
    x = torch.randn(2, 30, 80)
    p = torch.zeros(2, 30)
    off = SpecAugment(**{**BASE_SPECAUG, "time_mask_count": 0, "freq_mask_count": 0})
    state = torch.get_rng_state()
    assert torch.equal(off(x, p)[0], x)
    assert torch.equal(state, torch.get_rng_state())  # nothing drawn
    with pytest.raises(ValueError, match="time_masks_per_frame"):
        SpecAugment(**{**BASE_SPECAUG, "time_masks_per_frame": 0.1})
