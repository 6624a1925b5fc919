"""The ``imagenet_resnet`` registry entry (and its variants, which only change YAML values).

The variants select the activation and the last-BN init scale through ``model:``.

    python -m algoperf_torch workload=imagenet_resnet data.data_dir=~/data
    python -m algoperf_torch workload=imagenet_resnet_silu data=synthetic max_steps=5
"""

from __future__ import annotations

from algoperf_torch.spec import WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.common import classification_metric, softmax_cross_entropy_loss
from algoperf_torch.workloads.imagenet_resnet import data
from algoperf_torch.workloads.imagenet_resnet.model import ResNet


def build_model(config: WorkloadConfig) -> ResNet:
    m = config.model
    return ResNet(
        layers=tuple(m["layers"]),
        num_classes=int(m["num_classes"]),
        activation=str(m["activation"]),
        bn_init_scale=float(m["bn_init_scale"]),
    )


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=softmax_cross_entropy_loss,
    make_metric=classification_metric,
    is_output_param=lambda name: name in ("fc.weight", "fc.bias"),
    uses_batch_norm=True,
)
