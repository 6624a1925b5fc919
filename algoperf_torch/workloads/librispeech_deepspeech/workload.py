"""The ``librispeech_deepspeech`` registry entry (its variants only change YAML values).

Data, loss, decoding and WER are the Conformer workload's (``librispeech_conformer/``), as the
reference's DeepSpeech workload inherits them; only the model differs (``model.py`` here).

    python -m algoperf_torch workload=librispeech_deepspeech data.data_dir=~/data
    python -m algoperf_torch workload=librispeech_deepspeech_tanh data=synthetic max_steps=3
"""

from __future__ import annotations

import dataclasses

from torch import nn

from algoperf_torch.spec import WorkloadConfig
from algoperf_torch.workloads.librispeech_conformer.workload import FUNCTIONS as CONFORMER


def build_model(config: WorkloadConfig) -> nn.Module:
    from algoperf_torch.workloads.librispeech_deepspeech.model import build_deepspeech

    return build_deepspeech(config.model)


# Its BN statistics are all-reduced in training, and the reference does not sync before eval.
FUNCTIONS = dataclasses.replace(CONFORMER, build_model=build_model, sync_before_eval=False)
