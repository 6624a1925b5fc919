"""A submission's own imports resolve in its folder tree, whatever layout spelled them.

The three styles published submissions use (``submission_imports``): an organisers'-layout
dotted path, a top-level helper module, a bundled package importing its siblings as top-level
modules. Each submission here is written to a temporary folder and run unmodified.
"""

from __future__ import annotations

import csv
import json
import pickle
import re
import sys
import textwrap

import pytest
import torch
from conftest import run_cli, run_trial

from algoperf_torch.submission import (
    SubmissionError,
    SubmissionHardwareError,
    load_submission,
    load_submission_module,
)

# A reference-API submission; {imports} brings make_optimizer (and maybe Config) into scope.
BODY = textwrap.dedent(
    """
    import torch
    from algoperf import spec
    {imports}


    def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
        {init}
        return {{"optimizer": make_optimizer(model_params.parameters(), 0.003)}}


    def update_params(workload, current_param_container, current_params_types, model_state,
                      hyperparameters, batch, loss_type, optimizer_state, eval_results,
                      global_step, rng):
        {update}
        optimizer_state["optimizer"].zero_grad()
        logits, _ = workload.model_fn(current_param_container, batch, model_state,
                                      spec.ForwardPassMode.TRAIN, rng, True)
        out = workload.loss_fn(batch["targets"], logits)
        (out["summed"] / out["n_valid_examples"]).backward()
        optimizer_state["optimizer"].step()
        return optimizer_state, current_param_container, model_state


    def get_batch_size(workload_name):
        return 32


    def data_selection(workload, input_queue, optimizer_state, current_param_container,
                       model_state, hyperparameters, global_step, rng):
        return next(input_queue)
    """
)

MAKE_OPTIMIZER = textwrap.dedent(
    """
    import torch


    def make_optimizer(params, lr):
        return torch.optim.Adam(params, lr=lr)
    """
)


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def submission(folder, imports, init="pass", update="pass"):
    return write(folder / "submission.py", BODY.format(imports=imports, init=init, update=update))


def run_to_first_eval(tmp_path, sub):
    run_trial(
        tmp_path / "exp", ["optimizer=file", f"optimizer.path={sub}", "max_steps=2", "tuning=self"]
    )
    trial = tmp_path / "exp" / "digits_file" / "digits_pytorch" / "trial_1"
    rows = list(csv.DictReader(open(trial / "eval_measurements.csv")))
    assert rows and float(rows[0]["validation/accuracy"]) >= 0.0
    return rows


def build_organisers_layout(tmp_path, name="deep_sub"):
    """The v0.5 Shampoo's style: a deep path of the organisers' repository, none of it here."""
    root = tmp_path / "published" / name
    prefix = f"submissions.submissions_algorithms_v0_5.Team_7.external_tuning.{name}"
    write(root / "__init__.py")
    write(root / "optim" / "__init__.py")
    write(root / "optim" / "types_.py", "class Config:\n    lr = 0.003\n")
    write(
        root / "optim" / "core.py",
        f"from {prefix}.optim.types_ import Config\n" + MAKE_OPTIMIZER,
    )
    return submission(
        root,
        f"from {prefix}.optim.core import make_optimizer\n"
        f"from {prefix}.optim import types_\n"
        f"import {prefix}.optim.core as core",
        init="assert core.Config is types_.Config",
    )


def build_top_level_helper(tmp_path, helper="my_helper_mod", value=1):
    """A helper module beside submission.py, imported as a top-level module."""
    root = tmp_path / f"helper_sub_{value}"
    write(root / f"{helper}.py", MAKE_OPTIMIZER + f"\nVALUE = {value}\n")
    return submission(root, f"from {helper} import make_optimizer\nimport {helper}")


def build_sibling_package(tmp_path):
    """The v0.6 Shampoo's style: a bundled package whose files import their siblings (and a
    sibling sub-package) as top-level modules, while submission.py imports it by package path."""
    root = tmp_path / "bundled_sub"
    pkg = root / "optimizers" / "engine_pkg"
    write(root / "optimizers" / "__init__.py")
    write(pkg / "__init__.py")
    write(pkg / "engine_types.py", "class Config:\n    lr = 0.003\n")
    write(pkg / "engine_utils" / "__init__.py")
    write(pkg / "engine_utils" / "scale.py", "def scale(x):\n    return x\n")
    write(
        pkg / "engine.py",
        "from engine_types import Config\nfrom engine_utils.scale import scale\n"
        "import engine_utils.scale\n" + MAKE_OPTIMIZER,
    )
    return submission(
        root,
        "from optimizers.engine_pkg.engine import make_optimizer\n"
        "from optimizers.engine_pkg import engine\n"
        "from optimizers.engine_pkg.engine_types import Config",
        init="assert engine.Config is Config and isinstance(Config(), engine.Config)",
    )


@pytest.mark.parametrize(
    "build", [build_organisers_layout, build_top_level_helper, build_sibling_package]
)
def test_each_import_style_runs_unmodified_to_a_first_eval(tmp_path, build):
    path_before, meta_before = list(sys.path), list(sys.meta_path)
    run_to_first_eval(tmp_path, build(tmp_path))
    assert sys.path == path_before and sys.meta_path == meta_before


def test_renamed_folder_resolves_by_its_tail(tmp_path):
    # The v0.6 Shampoo's utils import "...shampoo_submission.optimizers..." from a folder
    # named "shampoo": the tail that is a path inside the folder decides.
    root = tmp_path / "renamed"
    write(root / "optimizers" / "__init__.py")
    write(root / "optimizers" / "core.py", MAKE_OPTIMIZER)
    sub = submission(
        root,
        "from submissions_algorithms.leaderboard.external_tuning.old_name.optimizers.core "
        "import make_optimizer",
    )
    assert callable(load_submission_module(str(sub)).make_optimizer)


def test_relative_import_from_the_submission_file(tmp_path):
    # submission.py is a module of its folder's (private) package, as the reference imports it.
    root = tmp_path / "relative"
    write(root / "my_helper_mod.py", MAKE_OPTIMIZER)
    sub = submission(root, "from .my_helper_mod import make_optimizer")
    assert callable(load_submission_module(str(sub)).make_optimizer)


def test_helper_names_do_not_leak_into_sys_modules(tmp_path):
    import algoperf_torch.submission_imports  # noqa: F401  (our own module, imported lazily)
    from algoperf_torch import compat

    compat.install()  # the algoperf.* stand-ins stay registered, deliberately
    before = set(sys.modules)
    for build in (build_organisers_layout, build_sibling_package, build_top_level_helper):
        load_submission_module(str(build(tmp_path)))
    leaked = {n for n in set(sys.modules) - before if not n.startswith("_algoperf_submission_")}
    # Only our private packages stay (the submission's functions and pickles need them); the
    # names it imported by (submissions.*, optimizers.*, engine_types, my_helper_mod) are gone.
    assert leaked == set(), sorted(leaked)


def test_two_submissions_with_the_same_helper_name_each_get_their_own(tmp_path):
    a = load_submission_module(str(build_top_level_helper(tmp_path, "helper", value=1)))
    b = load_submission_module(str(build_top_level_helper(tmp_path, "helper", value=2)))
    assert a.helper.VALUE == 1 and b.helper.VALUE == 2


def test_installed_module_wins_over_a_file_of_the_submission(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    root = tmp_path / "shadowing"
    write(root / "colorsys.py", "FAKE = True\n")
    write(root / "my_helper_mod.py", MAKE_OPTIMIZER)
    sub = submission(root, "import colorsys\nfrom my_helper_mod import make_optimizer")
    module = load_submission_module(str(sub))
    assert not hasattr(module.colorsys, "FAKE") and hasattr(module.colorsys, "rgb_to_hsv")


def test_lazy_import_inside_a_function_and_pickling(tmp_path):
    root = tmp_path / "lazy"
    write(root / "my_helper_mod.py", MAKE_OPTIMIZER + "\nclass State:\n    n = 3\n")
    write(root / "late_helper.py", "LATE = 7\n")
    sub = submission(
        root,
        "from my_helper_mod import make_optimizer, State",
        init="import late_helper\n    assert late_helper.LATE == 7",
    )
    loaded = load_submission(str(sub))
    model = torch.nn.Linear(2, 2)
    loaded.init_optimizer_state(None, model, None, None, None)
    assert "late_helper" not in sys.modules and "my_helper_mod" not in sys.modules
    # Classes live in the private module that stays in sys.modules, so they pickle.
    state = pickle.loads(pickle.dumps(loaded.module.State()))
    assert type(state) is loaded.module.State


def test_module_that_exists_nowhere_is_one_clear_error(tmp_path):
    sub = submission(tmp_path / "missing", "from no_such_module_xyz import make_optimizer")
    with pytest.raises(SubmissionError) as info:
        load_submission_module(str(sub))
    message = str(info.value)
    assert "'no_such_module_xyz'" in message and "neither installed nor" in message
    assert str(tmp_path / "missing") in message and "submission.py:4" in message


@pytest.mark.parametrize(
    "statement,expected",
    [
        ("from my_helper_mod.nope import make_optimizer", "my_helper_mod.py, which has no 'nope'"),
        ("from torch.no_such_sub import make_optimizer", "'torch' is installed"),
    ],
)
def test_missing_submodule_says_which_part_exists(tmp_path, statement, expected):
    root = tmp_path / "partly"
    write(root / "my_helper_mod.py", MAKE_OPTIMIZER)
    with pytest.raises(SubmissionError, match=re.escape(expected)):
        load_submission_module(str(submission(root, statement)))


def test_ambiguous_sibling_name_names_both_candidates(tmp_path):
    root = tmp_path / "ambiguous"
    write(root / "a" / "twin.py", MAKE_OPTIMIZER)
    write(root / "b" / "twin.py", MAKE_OPTIMIZER)
    sub = submission(root, "from twin import make_optimizer")
    with pytest.raises(SubmissionError, match="ambiguous.*twin.py.*twin.py"):
        load_submission_module(str(sub))


def test_package_folder_wins_over_a_module_file_beside_it(tmp_path):
    # As Python's own finder: twin/__init__.py before twin.py in the same folder.
    root = tmp_path / "pkg_first"
    write(root / "twin.py", "raise AssertionError('the module file was imported')\n")
    write(root / "twin" / "__init__.py", MAKE_OPTIMIZER)
    sub = submission(root, "from twin import make_optimizer")
    assert callable(load_submission_module(str(sub)).make_optimizer)


@pytest.mark.parametrize(
    "where,declaration,expected",
    [
        ("requirements_all.txt", "# pip\nnot-a-real-pkg-abc==1.2.3\n", "not-a-real-pkg-abc==1.2.3"),
        # A `conda list --export` file, as the v0.5 schedule-free submissions publish.
        (
            "requirements_all.txt",
            "torch=2.1.0=pypi_0\nnot_a_real_pkg_abc=1.2.3=pypi_0\n",
            "pip install 'not_a_real_pkg_abc==1.2.3'",
        ),
        # A conda environment as submission_info.yml, one folder up (as the rolling Lion's).
        (
            "../submission_info.yml",
            "name: env\ndependencies:\n  - python=3.11\n  - pip:\n      - not-a-real-pkg-abc==1.2.3\n",
            "not-a-real-pkg-abc==1.2.3",
        ),
    ],
)
def test_missing_declared_requirement_names_the_package(tmp_path, where, declaration, expected):
    root = tmp_path / "team" / "needs_pkg"
    write(root / where, declaration)
    sub = submission(root, "import not_a_real_pkg_abc\nfrom torch.optim import Adam as _A")
    with pytest.raises(SubmissionError) as info:
        load_submission_module(str(sub))
    message = str(info.value)
    assert "'not_a_real_pkg_abc'" in message and expected in message, message
    assert "pip install" in message


def test_cuda_assumption_is_a_hardware_error(tmp_path, monkeypatch):
    root = tmp_path / "cuda_sub"
    write(root / "my_helper_mod.py", MAKE_OPTIMIZER)
    sub = submission(
        root,
        "from my_helper_mod import make_optimizer",
        init='raise RuntimeError("Found no NVIDIA driver on your system.")',
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = load_submission(str(sub))
    with pytest.raises(SubmissionHardwareError, match="init_optimizer_state.*calls CUDA"):
        loaded.init_optimizer_state(None, torch.nn.Linear(2, 2), None, None, None)


def ddp_submission(tmp_path):
    # Distributed Shampoo's DDP distributor: needs a process group, asks for 8 trainers.
    root = tmp_path / "ddp_sub"
    write(root / "my_helper_mod.py", MAKE_OPTIMIZER)
    write(
        root / "distributor.py",
        """
        import torch.distributed as dist

        def make(num_trainers_per_group):
            if not dist.is_initialized():
                raise RuntimeError("DDPDistributor needs torch.distributed to be initialized!")
        """,
    )
    return submission(
        root,
        "from my_helper_mod import make_optimizer\nimport distributor",
        init="distributor.make(num_trainers_per_group=8)",
    )


def test_cuda_at_import_time_is_a_hardware_error(tmp_path, monkeypatch):
    sub = write(
        tmp_path / "cuda_import" / "submission.py",
        'raise AssertionError("Torch not compiled with CUDA enabled")\n',
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SubmissionHardwareError, match="its import .at submission.py:1. calls CUDA"):
        load_submission(str(sub))


def test_process_group_assumption_is_a_hardware_error(tmp_path):
    with pytest.raises(SubmissionHardwareError) as info:
        run_trial(
            tmp_path / "exp",
            ["optimizer=file", f"optimizer.path={ddp_submission(tmp_path)}", "tuning=self"],
        )
    message = str(info.value)
    assert "init_optimizer_state (at distributor.py:6)" in message, message
    assert "8 trainers per group" in message and "torchrun --nproc_per_node=8" in message


@pytest.mark.slow
def test_process_group_assumption_is_one_line_from_the_cli(tmp_path):
    sub = ddp_submission(tmp_path)
    proc = run_cli(
        [
            "optimizer=file",
            f"optimizer.path={sub}",
            "tuning=self",
            "max_steps=2",
            f"experiment_dir={tmp_path}/exp",
            "progress=off",
        ],
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "torchrun --nproc_per_node=8" in proc.stderr and "(at distributor.py:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_hparams_point_still_loads_with_the_file(tmp_path):
    # The runner's external-tuning path is unchanged: a point file alongside the submission.
    sub = build_top_level_helper(tmp_path)
    point = tmp_path / "p.json"
    point.write_text(json.dumps({"learning_rate": 0.003}))
    run_trial(
        tmp_path / "exp",
        ["optimizer=file", f"optimizer.path={sub}", f"optimizer.hparams={point}", "max_steps=1"],
    )
