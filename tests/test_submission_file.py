"""A reference-style submission file runs unmodified (RULES.md §1.1, §1.3)."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest
from conftest import run_cli, run_trial

SUBMISSION = textwrap.dedent(
    '''
    """A submission written the way published AlgoPerf PyTorch submissions are."""
    import torch
    import torch.distributed.nn as dist_nn

    from {package} import spec
    from {package}.pytorch_utils import pytorch_setup

    USE_PYTORCH_DDP, RANK, DEVICE, N_GPUS = pytorch_setup()


    def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
        del model_state, rng
        optimizer = torch.optim.Adam(model_params.parameters(), lr=hyperparameters.learning_rate)
        return {{"optimizer": optimizer}}


    def update_params(workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results,
                      global_step, rng, train_state=None):
        assert train_state is not None and "accumulated_submission_time" in train_state
        assert loss_type == spec.LossType.SOFTMAX_CROSS_ENTROPY
        assert set(current_params_types) == set(workload.param_shapes)
        assert all(isinstance(t, spec.ParameterType) for t in current_params_types.values())
        current_model = current_param_container
        current_model.train()
        optimizer_state["optimizer"].zero_grad()
        logits, new_model_state = workload.model_fn(
            params=current_model,
            augmented_and_preprocessed_input_batch=batch,
            model_state=model_state,
            mode=spec.ForwardPassMode.TRAIN,
            rng=rng,
            update_batch_norm=True,
        )
        loss_dict = workload.loss_fn(
            label_batch=batch["targets"],
            logits_batch=logits,
            mask_batch=batch.get("weights"),
            label_smoothing=getattr(hyperparameters, "label_smoothing", 0.0),
        )
        summed_loss = loss_dict["summed"]
        n_valid = loss_dict["n_valid_examples"]
        if USE_PYTORCH_DDP:
            summed_loss = dist_nn.all_reduce(summed_loss)
            n_valid = dist_nn.all_reduce(n_valid)
        loss = summed_loss / n_valid
        loss.backward()
        optimizer_state["optimizer"].step()
        if workload.metrics_logger is not None and global_step % 10 == 0:
            workload.metrics_logger.append_scalar_metrics(
                {{"loss": loss.item(), "step_hint": workload.step_hint}}, global_step
            )
        return optimizer_state, current_param_container, new_model_state


    def prepare_for_eval(workload, current_param_container, current_params_types, model_state,
                         hyperparameters, loss_type, optimizer_state, eval_results, global_step,
                         rng):
        return optimizer_state, current_param_container, model_state


    def get_batch_size(workload_name):
        if workload_name == "digits":
            return 32
        raise ValueError(f"Unsupported workload name: {{workload_name}}.")


    def data_selection(workload, input_queue, optimizer_state, current_param_container,
                       model_state, hyperparameters, global_step, rng):
        return next(input_queue)
    '''
)


def write_submission(tmp_path, package="algoperf"):
    path = tmp_path / f"submission_{package}.py"
    path.write_text(SUBMISSION.format(package=package))
    return path


@pytest.mark.parametrize("package", ["algoperf", "algorithmic_efficiency"])
def test_reference_style_submission_trains(tmp_path, package):
    sub = write_submission(tmp_path, package)
    point = tmp_path / "point.json"
    point.write_text(json.dumps({"learning_rate": 0.003, "label_smoothing": 0.0}))
    summary = run_trial(
        tmp_path,
        [
            "optimizer=file",
            f"optimizer.path={sub}",
            f"optimizer.hparams={point}",
            "max_steps=300",
            "workload.eval_period=1000",
            "workload.validation_target=0.9",
            "workload.test_target=0.9",
        ],
    )
    assert summary["global_batch_size"] == 32
    assert summary["reached_validation_target"], summary
    trial = tmp_path / "digits_file" / "digits_pytorch" / "trial_1"
    assert json.loads((trial / "hparams.json").read_text()) == {
        "learning_rate": 0.003,
        "label_smoothing": 0.0,
    }
    rows = list(csv.DictReader(open(trial / "measurements.csv")))
    losses = [float(r["loss"]) for r in rows if r.get("loss")]
    assert losses[-1] < losses[0] / 3


def test_list_form_search_space_uses_its_first_point(tmp_path):
    sub = write_submission(tmp_path)
    space = tmp_path / "tuning_search_space.json"
    space.write_text(json.dumps([{"learning_rate": 0.002}, {"learning_rate": 0.5}]))
    run_trial(
        tmp_path,
        ["optimizer=file", f"optimizer.path={sub}", f"optimizer.hparams={space}", "max_steps=2"],
    )
    trial = tmp_path / "digits_file" / "digits_pytorch" / "trial_1"
    assert json.loads((trial / "hparams.json").read_text()) == {"learning_rate": 0.002}


def test_missing_function_is_a_clear_error(tmp_path):
    from algoperf_torch.submission import SubmissionError, load_submission_module

    path = tmp_path / "broken.py"
    path.write_text(SUBMISSION.format(package="algoperf").replace("def data_selection", "def _ds"))
    with pytest.raises(SubmissionError, match="does not define data_selection"):
        load_submission_module(str(path))


def test_missing_file_fails_at_start_with_exit_code(tmp_path):
    proc = run_cli(
        ["optimizer=file", f"optimizer.path={tmp_path}/nope.py", f"experiment_dir={tmp_path}"]
    )
    assert proc.returncode != 0
    assert "nope.py" in proc.stderr and "does not exist" in proc.stderr


def test_search_space_point_is_laid_over_the_yaml_settings(tmp_path):
    # A sweeper-style point file sets only the searched keys; Shampoo's own settings (mode,
    # precondition_frequency ...) come from its YAML.
    point = tmp_path / "point.json"
    point.write_text(
        json.dumps(
            {
                "learning_rate": 0.01,
                "one_minus_beta1": 0.1,
                "beta2": 0.99,
                "warmup_factor": 0.05,
                "weight_decay": 0.0,
            }
        )
    )
    run_trial(tmp_path, ["optimizer=shampoo", f"optimizer.hparams={point}", "max_steps=2"])
    trial = tmp_path / "digits_shampoo" / "digits_pytorch" / "trial_1"
    used = json.loads((trial / "hparams.json").read_text())
    assert used["learning_rate"] == 0.01 and used["beta2"] == 0.99
    assert used["mode"] == "distributed" and used["precondition_frequency"] == 100


WRAPPER = textwrap.dedent(
    '''
    """A reference-API submission that wraps our Shampoo."""
    import torch

    from algoperf import spec
    from algoperf_torch.optimizers.shampoo import Shampoo


    def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
        opt = Shampoo(model_params.parameters(), lr=hyperparameters.learning_rate,
                      precondition_frequency=5, start_preconditioning_step=5)
        return {"optimizer": opt}


    def update_params(workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results,
                      global_step, rng):
        optimizer_state["optimizer"].zero_grad()
        logits, _ = workload.model_fn(current_param_container, batch, model_state,
                                      spec.ForwardPassMode.TRAIN, rng, True)
        out = workload.loss_fn(batch["targets"], logits)
        (out["summed"] / out["n_valid_examples"]).backward()
        optimizer_state["optimizer"].step()
        return optimizer_state, current_param_container, model_state


    def get_batch_size(workload_name):
        return 64


    def data_selection(workload, input_queue, optimizer_state, current_param_container,
                       model_state, hyperparameters, global_step, rng):
        return next(input_queue)
    '''
)


def test_submission_wrapping_one_of_our_optimizers(tmp_path):
    path = tmp_path / "wrap.py"
    path.write_text(WRAPPER)
    point = tmp_path / "p.json"
    point.write_text(json.dumps({"learning_rate": 0.003}))
    summary = run_trial(
        tmp_path,
        [
            "optimizer=file",
            f"optimizer.path={path}",
            f"optimizer.hparams={point}",
            "max_steps=200",
            "workload.eval_period=1e9",
        ],
    )
    trial = tmp_path / "digits_file" / "digits_pytorch" / "trial_1"
    last = list(csv.DictReader(open(trial / "eval_measurements.csv")))[-1]
    assert summary["global_step"] == 200 and float(last["validation/accuracy"]) > 0.8
