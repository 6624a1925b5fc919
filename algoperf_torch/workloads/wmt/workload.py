"""The ``wmt`` registry entry (and its variants ``wmt_post_ln``, ``wmt_attention_temp``,
``wmt_glu_tanh``, which only change YAML values): model, loss, metrics, synthetic batches.

Loss [algoperf/workloads/wmt/wmt_pytorch/workload.py ``compute_weighted_cross_entropy``]:
token cross-entropy with label smoothing over [B, 256], zero where the weight is 0,
``n_valid_examples`` = Σ weights (all positions when no mask is given). Eval: ``loss`` (no
smoothing) and ``accuracy`` per non-pad target token, and ``bleu`` of beam-search translations of
the same batches (the metric needs the model: see ``evaluation.evaluate_split``).

    python -m algoperf_torch workload=wmt data.data_dir=~/data
    python -m algoperf_torch workload=wmt_post_ln data=synthetic max_steps=3
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algoperf_torch.spec import Batch, LossOutput, WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.wmt import bleu
from algoperf_torch.workloads.wmt.decode import EOS_ID, translate
from algoperf_torch.workloads.wmt.model import Transformer, TransformerConfig

TRAIN_KEYS = (
    "inputs",
    "inputs_position",
    "inputs_segmentation",
    "targets",
    "targets_position",
    "targets_segmentation",
    "weights",
)
EVAL_KEYS = ("inputs", "targets", "weights")


def model_config(config: WorkloadConfig) -> TransformerConfig:
    return TransformerConfig(**dict(config.model))


def build_model(config: WorkloadConfig) -> Transformer:
    return Transformer(model_config(config))


def forward(model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None):
    """Teacher-forced logits [B, L, vocab]; packing keys are used when the batch has them."""
    return model(
        batch["inputs"],
        batch["targets"],
        inputs_positions=batch.get("inputs_position"),
        targets_positions=batch.get("targets_position"),
        inputs_segmentation=batch.get("inputs_segmentation"),
        targets_segmentation=batch.get("targets_segmentation"),
        dropout_rate=dropout_rate,
    )


def loss(
    config: WorkloadConfig,
    label_batch: torch.Tensor,
    logits_batch: torch.Tensor,
    mask_batch: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Per-token smoothed cross-entropy [B, L], masked by ``mask_batch`` (the ``weights``)."""
    if logits_batch.ndim != label_batch.ndim + 1:
        raise ValueError(
            f"logits of shape {tuple(logits_batch.shape)} do not fit targets of shape "
            f"{tuple(label_batch.shape)}: expected logits [..., L, vocab] for targets [..., L]"
        )
    # Class dimension second, as the reference calls CrossEntropyLoss (same kernel, same bits).
    per_token = F.cross_entropy(
        logits_batch.transpose(-2, -1),
        label_batch,
        reduction="none",
        label_smoothing=label_smoothing,
    )
    weights = torch.ones_like(label_batch) if mask_batch is None else mask_batch
    per_token = torch.where(weights.to(torch.bool), per_token, 0.0)
    return LossOutput(per_token.sum(), weights.sum(), per_token)


class WmtMetrics:
    """Summed token loss/accuracy and BLEU statistics of one eval split.

    ``data_dir`` (``metric_reads_data``) holds the SentencePiece model that detokenises ids;
    ``""`` on synthetic data, where BLEU is scored on the id strings. ``needs_model``: the eval
    loop also passes the model (for beam search).
    """

    needs_model = True

    def __init__(self, config: WorkloadConfig, data_dir: str = "") -> None:
        self.config = config
        self.data_dir = data_dir
        self._loss = torch.zeros((), dtype=torch.float64)
        self._correct = torch.zeros((), dtype=torch.float64)
        self._tokens = torch.zeros((), dtype=torch.float64)
        self._bleu = torch.zeros(bleu.NUM_STATS, dtype=torch.int64)
        self._detok = None

    def update(self, logits: torch.Tensor, batch: Batch, model=None) -> None:
        targets, weights = batch["targets"], batch["weights"]
        out = loss(self.config, targets, logits.float(), weights, 0.0)
        self._loss += out.summed.double().cpu()
        self._correct += ((logits.argmax(-1) == targets) * weights).sum().double().cpu()
        self._tokens += weights.sum().double().cpu()
        if model is not None:
            self._update_bleu(model, batch)

    def _update_bleu(self, model: nn.Module, batch: Batch) -> None:
        from algoperf_torch.workload import unwrap

        if self._detok is None:
            self._detok = detokenizer(self.data_dir or None)
        d = self.config.data
        # Rows with a real first target token; the reference scores the first that many rows.
        rows = int(batch["weights"].sum(0)[0]) if len(batch["weights"]) else 0
        if rows == 0:
            return
        predicted = translate(
            unwrap(model),
            batch["inputs"][:rows],
            max_decode_len=int(d["max_decode_len"]),
            beam_size=int(d["beam_size"]),
            alpha=float(d["length_penalty_alpha"]),
        )
        hyps = [self._detok(cut_at_eos(row)) for row in predicted.cpu()]
        refs = [self._detok(cut_at_eos(row)) for row in batch["targets"][:rows].cpu()]
        self._bleu += bleu.corpus_stats(hyps, refs)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "loss": self._loss,
            "accuracy": self._correct,
            "denominator": self._tokens,
            "bleu_stats": self._bleu,
        }

    def compute(self, state: dict[str, torch.Tensor], num_examples: int) -> dict[str, float]:
        """Per-token loss/accuracy (the reference divides by the non-pad tokens), and BLEU."""
        tokens = max(float(state["denominator"]), 1.0)
        return {
            "loss": float(state["loss"]) / tokens,
            "accuracy": float(state["accuracy"]) / tokens,
            "bleu": bleu.bleu_from_stats(state["bleu_stats"].round().long()),
        }


def cut_at_eos(row: torch.Tensor) -> list[int]:
    """Ids up to and including the first EOS [wmt/workload.py ``_decode_tokens``].

    Quirk kept from the reference: the cut index comes from ``argmax``, so a row without EOS
    keeps only its first token.
    """
    hits = (row == EOS_ID).nonzero()
    end = int(hits[0]) + 1 if len(hits) else 1
    return row[:end].tolist()


def detokenizer(data_dir: str | None):
    """ids -> text: the dataset's SentencePiece model, or id strings on synthetic data."""
    if data_dir is None:
        return lambda ids: " ".join(str(i) for i in ids if i != EOS_ID)
    from algoperf_torch.workloads.wmt.data import load_tokenizer

    sp = load_tokenizer(data_dir)
    return lambda ids: sp.decode_ids(ids)


def synthetic_batch(config: WorkloadConfig, batch_size: int, gen: torch.Generator) -> Batch:
    """Packed rows of the real keys, shapes and dtypes: 1-3 examples of random ids, EOS-ended."""
    m = config.model
    length, vocab = int(m["max_len"]), int(m["ntoken"])
    batch = {k: torch.zeros(batch_size, length, dtype=torch.int64) for k in TRAIN_KEYS}
    for side in ("inputs", "targets"):
        for b in range(batch_size):
            start, seg = 0, 1
            for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
                n = int(torch.randint(2, length // 3 + 1, (1,), generator=gen))
                ids = torch.randint(3, vocab, (n,), generator=gen)
                ids[-1] = EOS_ID
                sl = slice(start, start + n)
                batch[side][b, sl] = ids
                batch[f"{side}_position"][b, sl] = torch.arange(n)
                batch[f"{side}_segmentation"][b, sl] = seg
                start, seg = start + n, seg + 1
    batch["weights"] = (batch["targets"] > 0).to(torch.int64)
    return batch


def input_iterator(config, request):
    from algoperf_torch.workloads.wmt import data

    return data.input_iterator(config, request)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=input_iterator,
    synthetic_batch=synthetic_batch,
    loss=loss,
    make_metric=WmtMetrics,
    metric_reads_data=True,
    forward=forward,
    is_output_param=lambda name: name == "shared_embedding.weight",
)
