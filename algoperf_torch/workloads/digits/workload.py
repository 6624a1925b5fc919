"""The ``digits`` embedded default workload: the MNIST MLP on scikit-learn's 8x8 digits.

python -m algoperf_torch            # workload=digits optimizer=nadamw
"""

from __future__ import annotations

from algoperf_torch.spec import WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.common import classification_metric, softmax_cross_entropy_loss
from algoperf_torch.workloads.digits import data
from algoperf_torch.workloads.mnist.model import MLP


def build_model(config: WorkloadConfig) -> MLP:
    return MLP(**config.model)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=lambda config, request: data.input_iterator(config, request),
    synthetic_batch=data.synthetic_batch,
    loss=softmax_cross_entropy_loss,
    make_metric=classification_metric,
    is_output_param=lambda name: name.startswith("net.layer2."),
)
