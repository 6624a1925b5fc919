"""The LibriSpeech log-mel frontend: raw 16 kHz audio [B, T] -> normalised log-mel [B, F, 80].

The reference's ``MelFilterbankFrontend`` [algoperf/workloads/librispeech_conformer/
librispeech_pytorch/preprocessor.py] (WORKLOADS.md §6.1 step 1), shared by the Conformer and
DeepSpeech models and run on the model's device inside ``forward``. Frames of 401 samples with a
hop of 160 and no end padding, HTK pre-emphasis 0.97 (400 samples out), periodic Hann window,
|rFFT|² with 512 points (257 bins), 80 HTK-mel triangles 125-7600 Hz as
``tf.signal.linear_to_mel_weight_matrix`` (DC bin zeroed), log floor 1e-5, then the reference's
per-bin mean/stddev. Each op is the reference's, in its order, so the numbers are the same;
the mel matrix is computed once at construction instead of in every forward. Buffer names and
shapes are the reference's, so its state dicts load.

    python -m pytest tests/test_speech_frontend.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000
FRAME_SIZE = 401  # 25 ms + 1 sample consumed by the pre-emphasis
FRAME_STEP = 160  # 10 ms
FFT_SIZE = 512  # next power of two >= 401
NUM_BINS = 80
LOWER_EDGE_HERTZ = 125.0
UPPER_EDGE_HERTZ = 7600.0
PREEMPH = 0.97
OUTPUT_FLOOR = 1e-5
INPUT_SCALE = 2.0**-15  # int16 PCM -> [-1, 1)

# Per-bin log-mel statistics of LibriSpeech [preprocessor.py LIBRISPEECH_MEAN_VECTOR / _STD_].
# fmt: off
LIBRISPEECH_MEAN = (
    -7.6047816276550293, -7.1206226348876953, -6.8864245414733887, -6.8705768585205078,
    -6.9667720794677734, -7.1084094047546387, -6.9528026580810547, -6.783994197845459,
    -6.6195521354675293, -6.4876265525817871, -6.4120659828186035, -6.394047737121582,
    -6.4244871139526367, -6.3993711471557617, -6.5158271789550781, -6.7137999534606934,
    -6.8476877212524414, -6.9885001182556152, -6.9221386909484863, -7.146148681640625,
    -7.2040400505065918, -7.0537552833557129, -7.3140382766723633, -7.1223249435424805,
    -7.30251407623291, -7.1212143898010254, -7.2425732612609863, -7.1730537414550781,
    -7.0979413986206055, -7.088747501373291, -6.9849910736083984, -6.8787732124328613,
    -6.7602753639221191, -6.6300945281982422, -6.5145769119262695, -6.4245057106018066,
    -6.356513500213623, -6.31787633895874, -6.2660770416259766, -6.2468328475952148,
    -6.2821526527404785, -6.1908388137817383, -6.2484354972839355, -6.1472640037536621,
    -6.0924725532531738, -6.0171003341674805, -5.9250402450561523, -5.8535833358764648,
    -5.8209109306335449, -5.8118929862976074, -5.80783748626709, -5.7714629173278809,
    -5.7453732490539551, -5.7705655097961426, -5.7765641212463379, -5.7831673622131348,
    -5.7954087257385254, -5.7994823455810547, -5.8023476600646973, -5.8047118186950684,
    -5.8168182373046875, -5.8844799995422363, -5.9727106094360352, -6.0444660186767578,
    -6.1284866333007812, -6.2257585525512695, -6.3157496452331543, -6.39061164855957,
    -6.4928598403930664, -6.5498456954956055, -6.6054320335388184, -6.6508378982543945,
    -6.66917610168457, -6.6726889610290527, -6.684234619140625, -6.6974577903747559,
    -6.75471830368042, -6.7949142456054688, -6.8634209632873535, -6.94186544418335,
)
LIBRISPEECH_STD = (
    3.4353282451629639, 3.5962932109832764, 3.7012472152709961, 3.7369205951690674,
    3.7535104751586914, 3.693629264831543, 3.6922497749328613, 3.7641522884368896,
    3.8419716358184814, 3.8999848365783691, 3.9294240474700928, 3.9317409992218018,
    3.9139585494995117, 3.9031598567962646, 3.8691999912261963, 3.8155081272125244,
    3.7644970417022705, 3.7099106311798096, 3.6965086460113525, 3.6003766059875488,
    3.5493226051330566, 3.5465121269226074, 3.45003604888916, 3.4712812900543213,
    3.4084610939025879, 3.4408135414123535, 3.4104881286621094, 3.4217638969421387,
    3.4312851428985596, 3.4199209213256836, 3.4305806159973145, 3.4382665157318115,
    3.4580366611480713, 3.4817991256713867, 3.4958710670471191, 3.5036792755126953,
    3.5047574043273926, 3.4988734722137451, 3.493056058883667, 3.4822943210601807,
    3.459430456161499, 3.4612770080566406, 3.4559063911437988, 3.4755423069000244,
    3.4971549510955811, 3.5326557159423828, 3.5705199241638184, 3.5920312404632568,
    3.596907377243042, 3.5913500785827637, 3.5865931510925293, 3.5826809406280518,
    3.5837743282318115, 3.5895791053771973, 3.5819313526153564, 3.5837869644165039,
    3.5861184597015381, 3.5889589786529541, 3.592214822769165, 3.5939455032348633,
    3.5856630802154541, 3.5884113311767578, 3.5921022891998291, 3.5870490074157715,
    3.5806570053100586, 3.5731067657470703, 3.5617532730102539, 3.54980731010437,
    3.5527374744415283, 3.5475366115570068, 3.5387849807739258, 3.5256178379058838,
    3.5031836032867432, 3.4922726154327393, 3.4879646301269531, 3.4725594520568848,
    3.4558389186859131, 3.4351828098297119, 3.4284293651580811, 3.4299170970916748,
)
# fmt: on


def hertz_to_mel(hertz: torch.Tensor | float) -> torch.Tensor | float:
    """HTK mel scale, 1127 ln(1 + f / 700)."""
    if isinstance(hertz, torch.Tensor):
        return 1127.0 * torch.log(1.0 + hertz / 700.0)
    return 1127.0 * math.log(1.0 + hertz / 700.0)


def mel_weight_matrix(
    num_mel_bins: int = NUM_BINS,
    num_spectrogram_bins: int = FFT_SIZE // 2 + 1,
    sample_rate: float = SAMPLE_RATE,
    lower_edge_hertz: float = LOWER_EDGE_HERTZ,
    upper_edge_hertz: float = UPPER_EDGE_HERTZ,
) -> torch.Tensor:
    """[num_spectrogram_bins, num_mel_bins] triangles of ``tf.signal.linear_to_mel_weight_matrix``.

    Float32 throughout, in the reference's op order [preprocessor.py
    ``linear_to_mel_weight_matrix``]; the DC bin's row is zero (HTK convention).
    """
    if not 0.0 <= lower_edge_hertz < upper_edge_hertz <= sample_rate / 2:
        raise ValueError(
            f"mel edges {lower_edge_hertz}-{upper_edge_hertz} Hz: need "
            f"0 <= lower < upper <= Nyquist ({sample_rate / 2} Hz)"
        )
    freqs = torch.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins, dtype=torch.float32)
    bins_mel = hertz_to_mel(freqs[1:])[:, None]  # [257 - 1, 1], DC excluded
    edges = torch.linspace(
        hertz_to_mel(lower_edge_hertz),
        hertz_to_mel(upper_edge_hertz),
        num_mel_bins + 2,
        dtype=torch.float32,
    )
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = torch.minimum(lower_slopes, upper_slopes).clamp(min=0.0)
    return F.pad(weights, (0, 0, 1, 0))  # re-add the zero DC row


class PowerSpectrum(nn.Module):
    """Frames, pre-emphasis, Hann window and |rFFT|² (the reference's ``SpectrogramFrontend``).

    Holds the reference's ``window`` buffer, shape [1, 1, 400, 1].
    """

    def __init__(self) -> None:
        super().__init__()
        window = torch.hann_window(FRAME_SIZE - 1, periodic=True, dtype=torch.float32)
        self.register_buffer("window", window.reshape(1, 1, FRAME_SIZE - 1, 1))

    def forward(
        self, audio: torch.Tensor, paddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio, paddings [B, T] -> power spectrum [B, F, 257], frame paddings [B, F]."""
        x = audio * (1.0 - paddings) * INPUT_SCALE
        frames = x.unfold(1, FRAME_SIZE, FRAME_STEP)  # [B, F, 401]
        emphasised = torch.cat(
            [frames[..., :1] * (1.0 - PREEMPH), frames[..., 1:-1] - PREEMPH * frames[..., :-2]],
            dim=-1,
        )  # [B, F, 400]
        windowed = emphasised * self.window[0, 0, :, 0]
        power = torch.fft.rfft(windowed, FFT_SIZE, dim=-1).abs() ** 2.0  # [B, F, 257]
        # A frame is padding only if every sample in it is [preprocessor.py fprop_paddings].
        frame_paddings = paddings.unfold(1, FRAME_SIZE, FRAME_STEP).amin(dim=-1)
        return power, frame_paddings


class LogMelFrontend(nn.Module):
    """Normalised log-mel features (the reference's ``MelFilterbankFrontend``; no parameters).

    Buffers ``_normalizer_mean`` / ``_normalizer_stddev`` [1, 1, 80, 1] and ``stft.window`` keep
    the reference's names; ``mel_weights`` [257, 80] is not saved in state dicts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "_normalizer_mean",
            torch.tensor(LIBRISPEECH_MEAN, dtype=torch.float32)[None, None, :, None],
        )
        self.register_buffer(
            "_normalizer_stddev",
            torch.tensor(LIBRISPEECH_STD, dtype=torch.float32)[None, None, :, None],
        )
        self.stft = PowerSpectrum()
        self.register_buffer("mel_weights", mel_weight_matrix(), persistent=False)

    def forward(
        self, audio: torch.Tensor, paddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio [B, T] float32 PCM in int16 units, paddings [B, T] (1 = pad) ->
        features [B, F, 80], frame paddings [B, F], with F = (T - 401) // 160 + 1."""
        if audio.ndim != 2 or audio.shape != paddings.shape or audio.shape[1] < FRAME_SIZE:
            raise ValueError(
                f"audio {tuple(audio.shape)} and paddings {tuple(paddings.shape)}: expected equal "
                f"shapes [batch, samples] with samples >= {FRAME_SIZE}"
            )
        power, frame_paddings = self.stft(audio, paddings)
        mel = torch.einsum("fn,btf->btn", self.mel_weights, power)  # [B, F, 80]
        log_mel = torch.log(mel.clamp(min=OUTPUT_FLOOR))
        mean, std = self._normalizer_mean[0, 0, :, 0], self._normalizer_stddev[0, 0, :, 0]
        return (log_mel - mean) / std, frame_paddings
