"""The generic optimizer adapter: one training step shared by every baseline."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from algoperf_torch.__main__ import optimizer_yaml_hparams
from algoperf_torch.distributed import DistInfo
from algoperf_torch.submission import OptimizerSubmission, SubmissionError, make_hyperparameters
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config


def one_step(optimizer: str):
    config = dataclasses.replace(load_config("cifar"), model={})
    functions = get_workload_functions("cifar")
    w = Workload(config, functions, DistInfo())
    model, _ = w.init_model_fn([5, 5])
    gen = torch.Generator().manual_seed(0)
    batch = functions.synthetic_batch(config, 8, gen)
    h = optimizer_yaml_hparams({"name": optimizer})
    sub = OptimizerSubmission(optimizer, h, {"cifar": 8})
    state = sub.init_optimizer_state(w, model, None, make_hyperparameters(h), None)
    sub.update_params(
        w, model, w.model_params_types, None, None, batch, w.loss_type, state, [], 0, None
    )
    return model


def test_sam_second_pass_leaves_batch_norm_statistics_alone():
    # The first forward is the same for SAM and AdamW (same init, same batch): if SAM's second
    # pass updated BN statistics, its running means would differ from AdamW's after one step.
    sam, adamw = one_step("sam"), one_step("adamw")
    assert torch.equal(sam.bn1.running_mean, adamw.bn1.running_mean)
    assert not torch.equal(sam.bn1.running_mean, torch.zeros_like(sam.bn1.running_mean))
    assert sam.bn1.num_batches_tracked == 2  # both passes ran in training mode


def test_unknown_hyperparameter_is_named():
    with pytest.raises(SubmissionError, match=r"unknown hyperparameter\(s\) \['lr'\]"):
        OptimizerSubmission("nadamw", {"lr": 0.1}, {})
