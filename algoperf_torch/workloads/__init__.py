"""The workload registry: AlgoPerf name -> the code that implements it.

Keys are the reference's workload names and equal the YAML file names in ``conf/workload/``
(a variant's YAML names its base's code with ``impl:``). Constants live in the YAML, never here.
Modules are imported when an entry is first asked for, so listing names costs nothing.

    python -m algoperf_torch.workloads
"""

from __future__ import annotations

import importlib

from algoperf_torch.spec import WorkloadFunctions

# name -> module whose ``FUNCTIONS`` is the entry. One screen shows every workload.
WORKLOADS: dict[str, str] = {
    "digits": "algoperf_torch.workloads.digits.workload",
    "mnist": "algoperf_torch.workloads.mnist.workload",
    "cifar": "algoperf_torch.workloads.cifar.workload",
    "imagenet_resnet": "algoperf_torch.workloads.imagenet_resnet.workload",
    "imagenet_vit": "algoperf_torch.workloads.imagenet_vit.workload",
    "ogbg": "algoperf_torch.workloads.ogbg.workload",
    "finewebedu_lm": "algoperf_torch.workloads.finewebedu_lm.workload",
    "fastmri": "algoperf_torch.workloads.fastmri.workload",
    "librispeech_conformer": "algoperf_torch.workloads.librispeech_conformer.workload",
    "librispeech_deepspeech": "algoperf_torch.workloads.librispeech_deepspeech.workload",
    "criteo1tb": "algoperf_torch.workloads.criteo1tb.workload",
    "wmt": "algoperf_torch.workloads.wmt.workload",
}


def get_workload_functions(impl: str) -> WorkloadFunctions:
    """The registry entry for ``impl``; an unknown name lists the valid ones."""
    if impl not in WORKLOADS:
        raise KeyError(
            f"unknown workload code {impl!r}; registered: {', '.join(sorted(WORKLOADS))}"
        )
    return importlib.import_module(WORKLOADS[impl]).FUNCTIONS
