"""LibriSpeech loss and eval metric: CTC loss, greedy CTC decoding, word error rate.

Shared by ``librispeech_conformer`` and ``librispeech_deepspeech`` (WORKLOADS.md §6.3, §7.3).

- ``ctc_loss``: the reference's ``loss_fn`` [librispeech_pytorch/workload.py]: CTC (blank 0, no
  length normalisation, ``zero_infinity=False``) on log-softmax logits; ``n_valid_examples`` is
  the number of target tokens (EOS included) without a mask, the number of masked-in examples
  with a non-empty target with one; floored at 1.
- ``greedy_decode``: per-frame argmax, padded frames -> 0, consecutive repeats collapsed, then
  blanks (0) dropped; ids left-aligned and zero-filled [``greedy_decode`` there].
- ``SpeechMetrics``: ``ctc_loss`` = Σ loss / Σ target tokens and ``wer`` = Σ word errors / Σ
  reference words over a split. ``wer`` is the reference's number [metrics.py ``compute_wer``]:
  it compares ``str()`` of TensorFlow string tensors, i.e. ``tf.Tensor(b'TEXT', shape=(),
  dtype=string)`` (the targets were set with it); ``wer_true`` is the WER of the plain
  detokenised transcripts. Both are ratios of sums, so the state is four sums per split.

Edit distance: rapidfuzz's Levenshtein (C++, on lists of words, unit costs) — the reference's
numpy DP computes the same distance in Python loops.

    python -m pytest tests/test_librispeech_metrics.py
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein

from algoperf_torch.spec import Batch, LossOutput, WorkloadConfig

BLANK_ID = 0
"""CTC blank = target padding value = SentencePiece ``<unk>`` (WORKLOADS.md §6.4)."""

TOKENIZER_FILE = "spm_model.vocab"
"""The reference's file name for the (binary) SentencePiece model."""


def ctc_loss(
    config: WorkloadConfig | None,
    label_batch: tuple[torch.Tensor, torch.Tensor],
    logits_batch: tuple[torch.Tensor, torch.Tensor],
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Per-utterance CTC losses [librispeech_pytorch/workload.py ``loss_fn``].

    Args:
        label_batch: (targets [B, L] ids as floats or ints, target_paddings [B, L], 1 = pad).
        logits_batch: (logits [B, T, V], logit_paddings [B, T], 1 = pad).
        mask_batch: optional [B] example weights.
        label_smoothing: ignored, as in the reference.
    """
    del label_smoothing
    targets, target_paddings = label_batch
    logits, logit_paddings = logits_batch
    logprobs = torch.log_softmax(logits, dim=-1).transpose(0, 1)  # [T, B, V], time-major
    input_lengths = (1 - logit_paddings).sum(dim=1).long()
    target_lengths = (1 - target_paddings).sum(dim=1).long()
    per_example = F.ctc_loss(
        logprobs,
        targets.long(),
        input_lengths,
        target_lengths,
        blank=BLANK_ID,
        reduction="none",
        zero_infinity=False,
    )
    if mask_batch is not None:
        per_example = per_example * mask_batch
        counted = torch.logical_and(mask_batch, target_lengths)  # examples, not tokens
    else:
        counted = target_lengths  # tokens
    n_valid = counted.sum().to(per_example).clamp(min=1)  # the reference's max(n, 1)
    return LossOutput(per_example.sum(), n_valid, per_example)


def greedy_decode(
    logits: torch.Tensor, logit_paddings: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-path CTC decoding, vectorised.

    Returns (ids [B, T] int64, left-aligned, zero-filled; paddings [B, T] bool, True where the
    id is 0), the reference's ``greedy_decode`` result (which it computes with
    ``unique_consecutive`` over a flattened batch).
    """
    frames = logits.argmax(dim=-1) * (logit_paddings == 0)  # [B, T]; padded frames -> blank
    starts_run = torch.ones_like(frames, dtype=torch.bool)
    starts_run[:, 1:] = frames[:, 1:] != frames[:, :-1]
    keep = starts_run & (frames != BLANK_ID)  # collapse repeats first, then drop blanks
    # Kept ids move to the front of their row, in order: position = running count - 1.
    position = torch.cumsum(keep, dim=1) - 1
    column = torch.where(keep, position, frames.shape[1])  # dropped ids go to a spare column
    out = torch.zeros(frames.shape[0], frames.shape[1] + 1, dtype=torch.int64, device=frames.device)
    out.scatter_(1, column, torch.where(keep, frames, 0).long())
    ids = out[:, :-1]
    return ids, ids == 0


def tf_string_repr(text: str) -> str:
    """``str()`` of a TF scalar string tensor holding ``text`` (the reference's WER quirk).

    [metrics.py ``compute_wer``] applies ``str()`` to ``tokenizer.detokenize(...)``, a
    ``tf.Tensor``; its text is ``tf.Tensor(<repr of the UTF-8 bytes>, shape=(), dtype=string)``.
    The bytes repr uses ``"`` quotes when the text has ``'`` and no ``"``.
    """
    return f"tf.Tensor({text.encode('utf-8')!r}, shape=(), dtype=string)"


def word_errors(hypothesis: str, reference: str) -> tuple[int, int]:
    """(word-level Levenshtein distance, number of reference words), whitespace-split."""
    ref = reference.split()
    return Levenshtein.distance(hypothesis.split(), ref), len(ref)


def reference_word_errors(hypothesis: str, reference: str) -> tuple[int, int]:
    """The reference's (errors, words) for one utterance [metrics.py ``compute_wer``]: both
    strings TF-wrapped, then the wrapped reference whitespace-normalised."""
    ref = " ".join(tf_string_repr(reference).split())
    return Levenshtein.distance(tf_string_repr(hypothesis).split(), ref.split()), len(
        ref.split(" ")
    )


class IdWords:
    """Detokeniser for synthetic data (no tokenizer): each id >= 3 is a word, ids 0-2 vanish."""

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [" ".join(str(i) for i in row if i > 2) for row in ids]


def load_tokenizer(path: str):
    """The SentencePiece model at ``path`` (a clear error when it is missing)."""
    import sentencepiece as spm

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"LibriSpeech tokenizer {path!r} not found; it is written by: python -m "
            "algoperf_torch.data librispeech --data-dir <D> --archives-dir <A>"
        )
    return spm.SentencePieceProcessor(model_file=path)


class SpeechMetrics:
    """Accumulates one eval split: CTC loss, reference WER and true WER, as sums.

    Args:
        tokenizer: anything with ``decode(list[list[int]]) -> list[str]`` (SentencePiece's
            processor; ``IdWords`` for synthetic data).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._sums = torch.zeros(6, dtype=torch.float64)
        # loss, target tokens, word errors, words, true word errors, true words

    def update(self, logits: tuple[torch.Tensor, torch.Tensor], batch: Batch) -> None:
        logits, logit_paddings = logits
        targets, target_paddings = batch["targets"]
        loss = ctc_loss(None, (targets, target_paddings), (logits, logit_paddings))
        decoded, decoded_paddings = greedy_decode(logits, logit_paddings)
        hyps = _rows(decoded.cpu().numpy(), (~decoded_paddings).sum(dim=1).cpu().numpy())
        refs = _rows(
            targets.cpu().numpy().astype(np.int64),
            (target_paddings == 0).sum(dim=1).cpu().numpy(),
        )
        errors = self.word_error_sums(self.tokenizer.decode(hyps), self.tokenizer.decode(refs))
        self._sums += torch.tensor(
            [float(loss.summed), float(loss.n_valid_examples), *errors], dtype=torch.float64
        )

    @staticmethod
    def word_error_sums(hyps: Sequence[str], refs: Sequence[str]) -> tuple[int, int, int, int]:
        """(reference errors, reference words, true errors, true words) over utterances."""
        sums = [0, 0, 0, 0]
        for hyp, ref in zip(hyps, refs, strict=True):
            quirk, plain = reference_word_errors(hyp, ref), word_errors(hyp, ref)
            for k, v in enumerate((*quirk, *plain)):
                sums[k] += v
        return sums[0], sums[1], sums[2], sums[3]

    def state(self) -> dict[str, torch.Tensor]:
        return {"sums": self._sums.clone()}

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]:
        loss, tokens, errors, words, true_errors, true_words = state["sums"].tolist()
        return {
            "ctc_loss": loss / tokens if tokens else float("nan"),
            "wer": errors / words if words else float("nan"),
            "wer_true": true_errors / true_words if true_words else float("nan"),
        }


def _rows(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(ids, lengths)]
