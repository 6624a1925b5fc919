"""The ``mnist`` development workload's registry entry (RULES.md, WORKLOADS.md §10).

python -m algoperf_torch workload=mnist data.data_dir=~/data
"""

from __future__ import annotations

from algoperf_torch.spec import WorkloadConfig, WorkloadFunctions
from algoperf_torch.workloads.common import classification_metric, softmax_cross_entropy_loss
from algoperf_torch.workloads.mnist import data
from algoperf_torch.workloads.mnist.model import MLP


def build_model(config: WorkloadConfig) -> MLP:
    return MLP(**config.model)


FUNCTIONS = WorkloadFunctions(
    build_model=build_model,
    input_iterator=data.input_iterator,
    synthetic_batch=data.synthetic_batch,
    loss=softmax_cross_entropy_loss,
    make_metric=classification_metric,
    # The reference lists "net.layer2.weight" and (sic) "net_layer2.bias".
    is_output_param=lambda name: name in ("net.layer2.weight", "net.layer2.bias"),
    reinit_in_place=True,
)
