"""The ``cifar`` development workload's registry entry: ResNet-18 on CIFAR-10 (WORKLOADS.md §11).

Reference: algoperf/workloads/cifar/workload.py and cifar_pytorch/workload.py. ``model_fn``
(train/eval mode, the ``update_batch_norm`` switch, EVAL + ``update_batch_norm=True`` refused) is
the runtime ``Workload``'s, enabled by ``uses_batch_norm=True``.

    python -m algoperf_torch workload=cifar data=real data.data_dir=~/data
"""

from __future__ import annotations

from algoperf_torch.spec import WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.cifar import data
from algoperf_torch.workloads.cifar.model import ResNet
from algoperf_torch.workloads.common import classification_metric, softmax_cross_entropy_loss


def build_model(config: WorkloadConfig) -> ResNet:
    return ResNet(**config.model)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=softmax_cross_entropy_loss,
    make_metric=classification_metric,
    is_output_param=lambda name: name in ("fc.weight", "fc.bias"),
    uses_batch_norm=True,
    reinit_in_place=True,
)
