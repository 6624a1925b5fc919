"""fastMRI data: setup from tiny single-coil volumes packed as the official .tar.xz archives,
the slice pipeline on the result (splits, masks, padding, resume, ranks) and a 3-step trial.

    python -m pytest tests/test_fastmri_data.py
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tarfile
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf

from algoperf_torch.data import fastmri as setup
from algoperf_torch.distributed import DistInfo
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest, ForwardPassMode, StatefulIterator, WorkloadConfig
from algoperf_torch.workload import Workload
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.fastmri import data as fastmri_data
from algoperf_torch.workloads.fastmri.transforms import column_mask

TRAIN_VOLUMES, VAL_VOLUMES = (3, 3, 3), (2, 2, 2)  # slices per volume
WIDTHS = (368, 372)
ID_SCALE = 5e-5  # slice i's constant target is ID_SCALE * (1 + 0.002 * i): ids survive batches


def slice_id_target(i: int) -> float:
    return ID_SCALE * (1 + 0.002 * i)


def decode_ids(batch) -> list[int]:
    """The slice ids of a batch (the target of slice i is the constant ``slice_id_target(i)``)."""
    raw = batch["targets"].mean(dim=(1, 2)) * batch["std"] + batch["mean"]
    return [round((float(r) / ID_SCALE - 1) / 0.002) for r in raw]


def write_volume(path: str, first_id: int, num_slices: int, width: int, seed: int) -> None:
    """A single-coil volume in the official layout. Each slice's k-space is a random
    low-frequency block (zero elsewhere, so the archives compress well): a smooth known image."""
    rng = np.random.default_rng(seed)
    kspace = np.zeros((num_slices, 640, width), np.complex64)
    c = width // 2
    block = rng.standard_normal((num_slices, 2, 48, 48)) * 1e-3
    kspace[:, 296:344, c - 24 : c + 24] = block[:, 0] + 1j * block[:, 1]
    kspace[:, 320, c] += 0.05  # the DC term: a positive mean image
    target = np.stack(
        [np.full((320, 320), slice_id_target(first_id + s), np.float32) for s in range(num_slices)]
    )
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=target)
        f.create_dataset("reconstruction_rss", data=target)  # present in the official files
        f.attrs["max"] = float(target.max())
        f.attrs["acquisition"] = "CORPD_FBK"


def make_archives(folder: str) -> None:
    """knee_singlecoil_{train,val}.tar.xz holding singlecoil_{train,val}/file*.h5."""
    os.makedirs(folder, exist_ok=True)
    staging = os.path.join(folder, "staging")
    for split, volumes, first in (("train", TRAIN_VOLUMES, 0), ("val", VAL_VOLUMES, 100)):
        os.makedirs(os.path.join(staging, split), exist_ok=True)
        with tarfile.open(
            os.path.join(folder, f"knee_singlecoil_{split}.tar.xz"), "w:xz", preset=0
        ) as tar:
            for v, n in enumerate(volumes):
                name = f"file{1000000 + first * 10 + v}.h5"
                path = os.path.join(staging, split, name)
                write_volume(path, first + sum(volumes[:v]), n, WIDTHS[v % 2], seed=first + v)
                tar.add(path, arcname=f"singlecoil_{split}/{name}")


def setup_args(data_dir: str, archives: str, allow_partial: bool = True) -> argparse.Namespace:
    return argparse.Namespace(data_dir=data_dir, archives_dir=archives, allow_partial=allow_partial)


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("fastmri_archives"))
    make_archives(folder)
    return folder


@pytest.fixture(scope="module")
def data_dir(archives, tmp_path_factory) -> str:
    data = str(tmp_path_factory.mktemp("fastmri_data"))
    assert setup.run(setup_args(data, archives)) == 0
    return data


def tiny_config(**overrides) -> WorkloadConfig:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="algoperf_torch.conf", version_base=None):
        cfg = compose("config", ["workload=fastmri"])
    values = OmegaConf.to_container(cfg.workload, resolve=True)
    values.update(
        num_train_examples=9,
        num_eval_train_examples=5,
        num_validation_examples=4,
        num_test_examples=2,
        eval_batch_size=3,
        **overrides,
    )
    values["data"] = {**values["data"], "num_validation_volumes": 2}
    return WorkloadConfig.from_dict(values)


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def saved_and_loaded(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


# --- dataset setup ----------------------------------------------------------------------------
def test_setup_layout_and_index(data_dir):
    root = os.path.join(data_dir, "fastmri")
    assert sorted(os.listdir(os.path.join(root, "knee_singlecoil_train"))) == [
        ".archive_done.json",
        "file1000000.h5",
        "file1000001.h5",
        "file1000002.h5",
    ]
    assert not os.path.exists(os.path.join(root, ".partial"))
    index = json.load(open(os.path.join(root, "slice_index.json")))
    assert index["knee_singlecoil_train"] == [
        ["file1000000.h5", 3, 368],
        ["file1000001.h5", 3, 372],
        ["file1000002.h5", 3, 368],
    ]
    assert [v[1] for v in index["knee_singlecoil_val"]] == [2, 2, 2]


def test_setup_counts_need_allow_partial(data_dir, archives, capsys):
    assert setup.run(setup_args(data_dir, archives, allow_partial=False)) == 1
    err = capsys.readouterr().err
    assert "knee_singlecoil_train: 3 volumes / 9 slices, expected 973 / 34742" in err
    assert "knee_singlecoil_val: 3 volumes / 6 slices, expected 199 / 7135" in err
    assert setup.run(setup_args(data_dir, archives)) == 0
    out, err = capsys.readouterr()
    assert "already extracted" in out and "warning (--allow-partial)" in err


def test_setup_interrupted_then_rerun(archives, tmp_path, capsys):
    """A run killed mid-archive (a truncated archive here) leaves only complete volumes in
    place; the re-run extracts just the missing ones; a third run touches nothing."""
    cut = tmp_path / "cut"
    cut.mkdir()
    data = open(os.path.join(archives, "knee_singlecoil_train.tar.xz"), "rb").read()
    (cut / "knee_singlecoil_train.tar.xz").write_bytes(data[: int(len(data) * 0.6)])
    assert setup.run(setup_args(str(tmp_path / "d"), str(cut))) == 1
    assert "Re-run the same command to resume" in capsys.readouterr().err
    folder = tmp_path / "d" / "fastmri" / "knee_singlecoil_train"
    done = sorted(p.name for p in folder.glob("*.h5"))
    assert 0 < len(done) < 3, done  # some complete volumes, the interrupted one not in place
    for name in done:
        setup.check_volume(str(folder / name))
    kept = {n: os.stat(folder / n).st_mtime_ns for n in done}
    assert setup.run(setup_args(str(tmp_path / "d"), archives)) == 0
    out = capsys.readouterr().out
    assert f"{3 - len(done)} volumes extracted, {len(done)} already in place" in out
    assert {n: os.stat(folder / n).st_mtime_ns for n in done} == kept
    assert setup.run(setup_args(str(tmp_path / "d"), archives)) == 0
    assert capsys.readouterr().out.count("already extracted") == 2


def test_setup_rejects_a_malformed_volume_by_name(tmp_path, capsys):
    folder = tmp_path / "d" / "fastmri" / "knee_singlecoil_train"
    folder.mkdir(parents=True)
    with h5py.File(folder / "file7.h5", "w") as f:
        f.create_dataset("kspace", data=np.zeros((2, 600, 368), np.complex64))
        f.create_dataset("reconstruction_esc", data=np.zeros((2, 320, 320), np.float32))
    (folder / "file8.h5").write_bytes(b"not hdf5")
    assert setup.run(setup_args(str(tmp_path / "d"), str(tmp_path / "none"))) == 1
    err = capsys.readouterr().err
    assert "file7.h5: kspace complex64 (2, 600, 368); expected complex64 [slices, 640, W]" in err
    os.remove(folder / "file7.h5")
    assert setup.run(setup_args(str(tmp_path / "d"), str(tmp_path / "none"))) == 1
    assert "file8.h5: not a readable HDF5 volume" in capsys.readouterr().err


def test_missing_data_error_says_how_to_prepare(tmp_path):
    request = DataRequest("validation", str(tmp_path), 4, 0, num_examples=4)
    with pytest.raises(FileNotFoundError, match="python -m algoperf_torch.data fastmri"):
        fastmri_data.input_iterator(tiny_config(), request)


# --- input pipeline ---------------------------------------------------------------------------
def test_train_batches_keys_shapes_and_masks(data_dir):
    config = tiny_config()
    it = fastmri_data.input_iterator(config, DataRequest("train", data_dir, 4, seed=1))
    assert isinstance(it, StatefulIterator)
    batches = take(it, 6)  # 3 epochs of 2 batches (9 slices, the incomplete third batch dropped)
    b = batches[0]
    assert set(b) == {"inputs", "targets", "mean", "std", "volume_max"}
    assert b["inputs"].shape == b["targets"].shape == (4, 320, 320)
    assert all(v.dtype == torch.float32 for v in b.values())
    assert b["mean"].shape == b["std"].shape == b["volume_max"].shape == (4,)
    assert b["inputs"].abs().max() <= 6 and (b["std"] > 0).all()
    ids = [decode_ids(x) for x in batches]
    for e in range(3):
        epoch = ids[2 * e] + ids[2 * e + 1]
        assert len(set(epoch)) == 8 and set(epoch) <= set(range(9))
    assert ids[0] + ids[1] != ids[2] + ids[3]  # reshuffled every epoch
    # A slice's mask (hence its input) is the same in every epoch.
    seen = {}
    for x in batches:
        for i, row in zip(decode_ids(x), x["inputs"]):
            if i in seen:
                assert torch.equal(seen[i], row)
            seen[i] = row
    # volume_max is the volume's attribute: the largest target of the volume.
    for i, vmax in zip(ids[0], b["volume_max"].tolist()):
        last = (i // 3) * 3 + 2
        assert vmax == pytest.approx(slice_id_target(last), rel=1e-6)


def test_eval_splits_padding_and_fixed_masks(data_dir):
    config = tiny_config()
    seen = {}
    for split, n, expected in (
        ("validation", 4, [100, 101, 102, 103]),
        ("test", 2, [104, 105]),
        ("eval_train", 5, None),
    ):
        batches = list(
            fastmri_data.input_iterator(config, DataRequest(split, data_dir, 3, 2, num_examples=n))
        )
        assert [len(b["inputs"]) for b in batches] == [3] * len(batches)
        last = batches[-1]
        real = n - 3 * (len(batches) - 1)
        if real < 3:
            assert last["weights"].dtype == torch.float64
            assert last["weights"].tolist() == [1.0] * real + [0.0] * (3 - real)
            for k in ("mean", "std", "volume_max", "inputs"):
                assert (last[k][real:] == 0).all()
        assert all("weights" not in b for b in batches[:-1])
        ids = [i for b in batches for i in decode_ids(b)][:n]
        seen[split] = ids
        if expected:
            assert ids == expected
    assert len(set(seen["eval_train"])) == 5 and max(seen["eval_train"]) < 9
    # Every eval slice of one width gets the same mask, from the fixed seed (0, 0): a slice's
    # input is then a function of its k-space alone.
    mask = column_mask(368, (0, 0))
    assert mask.sum() > 29  # the centre and some random columns
    ds = fastmri_data.SliceDataset(fastmri_data.split_slices(data_dir, "validation", 2))
    first = ds[(0, (0, 0))]["inputs"]
    batch = next(
        fastmri_data.input_iterator(
            config, DataRequest("validation", data_dir, 3, 9, num_examples=4)
        )
    )
    assert torch.equal(batch["inputs"][0], first)  # the data seed does not change eval masks


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_train_resume_is_bitwise_uninterrupted(data_dir, workers):
    config = tiny_config()
    request = DataRequest("train", data_dir, 4, seed=5, num_workers=workers)
    ks, m = (0, 1, 2, 3), 3
    it = fastmri_data.input_iterator(config, request)
    states, expected = {}, []
    for i in range(max(ks) + m):
        if i in ks:
            states[i] = saved_and_loaded(it.state_dict())
        expected.append(next(it))
    for k in ks:
        for resumed_workers in {workers, 0} | ({2} if k == 3 else set()):
            resumed = fastmri_data.input_iterator(
                config, replace(request, num_workers=resumed_workers)
            )
            resumed.load_state_dict(states[k])
            assert_same_batches(take(resumed, m), expected[k : k + m])
    with pytest.raises(PipelineStateError, match="seed"):
        other = fastmri_data.input_iterator(config, replace(request, seed=6))
        other.load_state_dict(states[1])


def test_eval_resume(data_dir):
    config = tiny_config()
    request = DataRequest("validation", data_dir, 3, 0, num_examples=4)
    it = fastmri_data.input_iterator(config, request)
    first = next(it)
    state = saved_and_loaded(it.state_dict())
    rest = list(it)
    resumed = fastmri_data.input_iterator(config, request)
    resumed.load_state_dict(state)
    assert_same_batches(list(resumed), rest)
    assert len(rest) == 1 and "weights" not in first


def test_ranks_split_the_single_process_stream(data_dir):
    config = tiny_config()
    whole = take(fastmri_data.input_iterator(config, DataRequest("train", data_dir, 4, 3)), 3)
    for rank in range(2):
        part = take(
            fastmri_data.input_iterator(
                config, DataRequest("train", data_dir, 2, 3, rank=rank, world_size=2)
            ),
            3,
        )
        for w, p in zip(whole, part):
            for k in w:
                assert torch.equal(w[k][2 * rank : 2 * rank + 2], p[k])


def _eval_ids_worker(rank: int, data_dir: str, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    config = tiny_config()
    ids = {}
    for split, n in (("validation", 4), ("eval_train", 5), ("test", 2)):
        request = DataRequest(split, data_dir, 2, seed=3, rank=rank, world_size=2, num_examples=n)
        local = []
        for b in fastmri_data.input_iterator(config, request):
            real = int(b["weights"].sum()) if "weights" in b else len(b["inputs"])
            local += decode_ids(b)[:real]
        gathered = [None, None]
        dist.all_gather_object(gathered, local)
        ids[split] = gathered
    if rank == 0:
        torch.save(ids, out)
    dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters importing torch: ~25 s on a 2-core machine
def test_two_rank_eval_covers_each_example_once(data_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ids.pt")
    mp.spawn(_eval_ids_worker, args=(data_dir, port, out), nprocs=2, join=True)
    ids = torch.load(out)
    assert sorted(ids["validation"][0] + ids["validation"][1]) == [100, 101, 102, 103]
    assert sorted(ids["test"][0] + ids["test"][1]) == [104, 105]
    single = [
        i
        for b in fastmri_data.input_iterator(
            tiny_config(), DataRequest("eval_train", data_dir, 5, seed=3, num_examples=5)
        )
        for i in decode_ids(b)
    ]
    assert sorted(ids["eval_train"][0] + ids["eval_train"][1]) == sorted(single)
    assert all(len(ids[s][0]) and len(ids[s][1]) for s in ids)


# --- a short trial through the real pipeline --------------------------------------------------
@pytest.mark.slow  # 3 steps and 3 eval splits at 320x320 on CPU: ~6 s on a loaded 2-core machine
def test_three_step_trial_small_unet(data_dir):
    from algoperf_torch.evaluation import evaluate

    config = tiny_config()
    config = replace(config, model={**config.model, "num_channels": 2, "num_pool_layers": 1})
    workload = Workload(config, get_workload_functions("fastmri"), DistInfo(), data_dir=data_dir)
    model, _ = workload.init_model_fn([0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = workload._build_input_queue([0], "train", data_dir, 2)
    for _ in range(3):
        batch = next(batches)
        out, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, None, False)
        loss = workload.loss_fn(batch["targets"], out)
        opt.zero_grad()
        (loss.summed / loss.n_valid_examples).backward()
        opt.step()
        assert torch.isfinite(loss.summed)
    results = evaluate(workload, model, seed=0)
    assert results["validation/num_examples"] == 4 and results["test/num_examples"] == 2
    assert -1.0 <= results["validation/ssim"] <= 1.0 and results["train/loss"] > 0


@pytest.mark.slow  # the full-size U-Net on CPU: about a minute
def test_runner_three_steps(data_dir, tmp_path):
    """``python -m algoperf_torch workload=fastmri data.data_dir=D max_steps=3 batch_size=4``."""
    from conftest import run_trial

    summary = run_trial(
        tmp_path,
        [
            "workload=fastmri",
            f"data.data_dir={data_dir}",
            "max_steps=3",
            "batch_size=4",
            "workload.num_train_examples=9",
            "workload.num_eval_train_examples=5",
            "workload.num_validation_examples=4",
            "workload.num_test_examples=2",
            "workload.eval_batch_size=3",
            "workload.data.num_validation_volumes=2",
            "workload.compile=off",
            "data.num_workers=2",
        ],
    )
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1
