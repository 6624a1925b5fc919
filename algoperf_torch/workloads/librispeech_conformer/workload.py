"""The ``librispeech_conformer`` registry entry (its variants only change YAML values).

The model, frontend and SpecAugment are in ``model.py``; CTC loss, decoding and WER in
``metrics.py``; batches in ``data.py`` (shared with ``librispeech_deepspeech``).

    python -m algoperf_torch workload=librispeech_conformer data.data_dir=~/data
    python -m algoperf_torch workload=librispeech_conformer_gelu data=synthetic max_steps=3
"""

from __future__ import annotations

from torch import nn

from algoperf_torch.spec import Batch, WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.librispeech_conformer import data, metrics


def build_model(config: WorkloadConfig) -> nn.Module:
    from algoperf_torch.workloads.librispeech_conformer.model import build_conformer

    return build_conformer(config.model)


def forward(model: nn.Module, batch: Batch, train: bool, dropout_rate: float | None):
    """(logits [B, T', V], logit paddings [B, T']), as the reference's ``model_fn`` returns."""
    audio, audio_paddings = batch["inputs"]
    return model(audio, audio_paddings, dropout_rate=dropout_rate)


def is_output_param(name: str) -> bool:
    return name in ("lin.weight", "lin.bias")


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=metrics.ctc_loss,
    make_metric=data.make_metric,
    forward=forward,
    is_output_param=is_output_param,
    uses_batch_norm=True,
    sync_before_eval=True,  # the reference's sync_sd: its BN statistics are per rank
    metric_reads_data=True,
)
