"""The Criteo 1TB pipeline on tiny prepared files: file-level shuffle, ranks, eval, resume.

The files come from the real setup command run on tiny day files in the raw format
(``criteo_raw.py``): 3 train days in 11 chunks of at most 5 lines, and day 23 in the
reference's 36 chunks (test: chunks 00-18, 95 rows; validation: 19-35, 83 rows).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from criteo_raw import LINES_PER_CHUNK, write_tiny

from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.criteo1tb import data as criteo

TRAIN_FILES = [f"day_0_{k:02d}" for k in range(5)] + [f"day_1_{k:02d}" for k in range(4)]
TRAIN_FILES += ["day_2_00", "day_2_01"]
NUM_TRAIN, NUM_VAL, NUM_TEST = 50, 83, 95


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("criteo")
    write_tiny(str(base / "raw"))
    args = ["criteo1tb", "--data-dir", str(base / "data"), "--archives-dir", str(base / "raw")]
    args += ["--lines-per-chunk", str(LINES_PER_CHUNK), "--workers", "1", "--allow-partial"]
    args += ["--no-download"]
    assert data_main(args) == 0
    return str(base / "data")


def config():
    return load_config("criteo1tb_test")


def chunk(data_dir: str, name: str) -> np.ndarray:
    return np.load(f"{data_dir}/criteo1tb/{name}.npy")


def rows_of(batches: list[dict]) -> np.ndarray:
    """Prepared-row layout [n, 40] of the real (weight 1) rows of ``batches``."""
    out = []
    for b in batches:
        keep = b["weights"].numpy() > 0
        rows = np.concatenate([b["targets"].numpy()[:, None], b["inputs"].numpy()], axis=1)
        out.append(rows[keep])
    return np.concatenate(out)


def file_order(data_dir: str, rows: np.ndarray, names: list[str]) -> list[str]:
    """The whole files whose concatenation starts ``rows`` (a file-level shuffle), in order."""
    order, pos, left = [], 0, dict.fromkeys(names)
    while pos < len(rows):
        match = [n for n in left if np.array_equal(chunk(data_dir, n)[0], rows[pos])]
        assert len(match) == 1, f"row {pos} does not start a file"
        arr = chunk(data_dir, match[0])
        take = min(len(arr), len(rows) - pos)
        assert np.array_equal(arr[:take], rows[pos : pos + take]), "a file is not read in order"
        order.append(match[0])
        del left[match[0]]
        pos += take
    return order


def take(it, n: int) -> list[dict]:
    return [next(it) for _ in range(n)]


def saved_and_loaded(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_day_23_has_the_reference_36_chunks(data_dir):
    index = criteo.read_index(f"{data_dir}/criteo1tb")
    assert [n for n in index if n.startswith("day_23_")] == [f"day_23_{k:02d}" for k in range(36)]
    assert index["day_23_35"] == 3 and sum(index[n] for n in TRAIN_FILES) == NUM_TRAIN


def test_batches_have_the_reference_keys_shapes_and_dtypes(data_dir):
    train = next(criteo.input_iterator(config(), DataRequest("train", data_dir, 4, seed=0)))
    assert train["inputs"].shape == (4, 39) and train["inputs"].dtype == torch.float32
    assert train["targets"].shape == (4,) and train["weights"].tolist() == [1.0] * 4
    assert train["inputs"].is_contiguous()
    ids = train["inputs"][:, 13:]
    assert torch.equal(ids, ids.floor()) and (ids >= 0).all()


def test_train_passes_are_file_shuffles_without_line_shuffle(data_dir):
    it = criteo.input_iterator(config(), DataRequest("train", data_dir, 4, seed=1))
    per_pass = NUM_TRAIN // 4  # 12 batches; the last 2 rows of each pass are dropped
    orders = []
    for _ in range(3):
        rows = rows_of(take(it, per_pass))
        assert len(rows) == 48
        orders.append(file_order(data_dir, rows, TRAIN_FILES))
    assert all(len(o) >= 10 for o in orders)
    assert orders[0] != orders[1] != orders[2]  # re-shuffled every pass
    again = criteo.input_iterator(config(), DataRequest("train", data_dir, 4, seed=1))
    assert file_order(data_dir, rows_of(take(again, per_pass)), TRAIN_FILES) == orders[0]
    other = criteo.input_iterator(config(), DataRequest("train", data_dir, 4, seed=2))
    assert file_order(data_dir, rows_of(take(other, per_pass)), TRAIN_FILES) != orders[0]


def test_ranks_read_their_slice_of_the_same_global_batches(data_dir):
    single = take(criteo.input_iterator(config(), DataRequest("train", data_dir, 6, seed=4)), 20)
    ranks = [
        take(
            criteo.input_iterator(
                config(), DataRequest("train", data_dir, 2, seed=4, rank=r, world_size=3)
            ),
            20,
        )
        for r in range(3)
    ]
    for k in range(20):
        joined = torch.cat([ranks[r][k]["inputs"] for r in range(3)])
        assert torch.equal(joined, single[k]["inputs"]), k


@pytest.mark.parametrize(
    ("split", "names", "n"),
    [
        ("validation", [f"day_23_{k}" for k in range(19, 36)], NUM_VAL),
        ("test", [f"day_23_{k:02d}" for k in range(19)], NUM_TEST),
    ],
)
def test_eval_splits_cover_each_row_once_padded(data_dir, split, names, n):
    expected = np.concatenate([chunk(data_dir, x) for x in names])
    assert len(expected) == n
    batches = list(criteo.input_iterator(config(), DataRequest(split, data_dir, 10, 0, 0, 1, n)))
    assert len(batches) == -(-n // 10) and all(len(b["targets"]) == 10 for b in batches)
    assert np.array_equal(rows_of(batches), expected)
    last = batches[-1]
    real = n % 10
    assert last["weights"].tolist() == [1.0] * real + [0.0] * (10 - real)
    assert not last["inputs"][real:].any() and not last["targets"][real:].any()
    shards = [
        rows_of(
            list(
                criteo.input_iterator(
                    config(),
                    DataRequest(split, data_dir, 4, 0, rank=r, world_size=2, num_examples=n),
                )
            )
        )
        for r in range(2)
    ]
    assert np.array_equal(np.concatenate(shards), expected)


def test_eval_train_is_redrawn_at_every_evaluation(data_dir):
    def eval_train(index: int) -> np.ndarray:
        request = DataRequest("eval_train", data_dir, 8, 3, num_examples=20, eval_index=index)
        batches = list(criteo.input_iterator(config(), request))
        assert len(batches) == 3 and batches[-1]["weights"].sum() == 4
        return rows_of(batches)

    first, again, later = eval_train(1), eval_train(1), eval_train(2)
    assert np.array_equal(first, again) and not np.array_equal(first, later)
    for rows in (first, later):
        assert len(file_order(data_dir, rows, TRAIN_FILES)) >= 4


def test_train_resume_is_uninterrupted_across_passes(data_dir):
    request = DataRequest("train", data_dir, 4, seed=5)
    full = take(criteo.input_iterator(config(), request), 30)
    for k in (0, 5, 12, 23):
        it = criteo.input_iterator(config(), request)
        take(it, k)
        state = saved_and_loaded(it.state_dict())
        resumed = criteo.input_iterator(config(), request)
        resumed.load_state_dict(state)
        for a, b in zip(take(resumed, 30 - k), full[k:]):
            assert all(torch.equal(a[key], b[key]) for key in a), k


def test_eval_resume_and_refusal_of_another_stream(data_dir):
    request = DataRequest("validation", data_dir, 10, 0, num_examples=NUM_VAL)
    full = list(criteo.input_iterator(config(), request))
    it = criteo.input_iterator(config(), request)
    take(it, 4)
    resumed = criteo.input_iterator(config(), request)
    resumed.load_state_dict(saved_and_loaded(it.state_dict()))
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(resumed, full[4:]))
    train = criteo.input_iterator(config(), DataRequest("train", data_dir, 4, seed=5))
    other = criteo.input_iterator(config(), DataRequest("train", data_dir, 4, seed=6))
    with pytest.raises(PipelineStateError, match="seed"):
        other.load_state_dict(train.state_dict())
    with pytest.raises(PipelineStateError):
        train.load_state_dict(it.state_dict())


def test_missing_or_short_data_errors(data_dir, tmp_path):
    with pytest.raises(criteo.CriteoDataError, match="python -m algoperf_torch.data criteo1tb"):
        criteo.input_iterator(config(), DataRequest("train", str(tmp_path), 4, 0))
    with pytest.raises(criteo.CriteoDataError, match="num_validation_examples"):
        criteo.input_iterator(config(), DataRequest("validation", data_dir, 4, 0, num_examples=84))
    with pytest.raises(criteo.CriteoDataError, match="fewer than one global batch"):
        criteo.input_iterator(config(), DataRequest("train", data_dir, 64, 0))


def test_a_chunk_that_disagrees_with_the_index_is_named(tmp_path):
    root = tmp_path / "criteo1tb"
    root.mkdir()
    np.save(root / "day_0_00.npy", np.zeros((5, 40), np.float32))
    (root / "index.json").write_text('{"files": {"day_0_00": 9}}')
    it = criteo.input_iterator(config(), DataRequest("train", str(tmp_path), 4, 0))
    with pytest.raises(criteo.CriteoDataError, match=r"day_0_00.npy: float32 \(5, 40\), expected"):
        next(it)


def test_three_step_trial_on_the_real_pipeline(data_dir, tmp_path):
    from conftest import run_trial

    summary = run_trial(
        tmp_path,
        [
            "workload=criteo1tb_test",
            "data=real",
            f"data.data_dir={data_dir}",
            "max_steps=3",
            "batch_size=8",
            f"workload.num_train_examples={NUM_TRAIN}",
            "workload.num_eval_train_examples=16",
            f"workload.num_validation_examples={NUM_VAL}",
            f"workload.num_test_examples={NUM_TEST}",
            "workload.eval_batch_size=16",
        ],
    )
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1


def _ranks_worker(rank: int, data_dir: str, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    got = {}
    request = DataRequest("train", data_dir, 3, seed=4, rank=rank, world_size=2)
    got["train"] = [b["inputs"] for b in take(criteo.input_iterator(config(), request), 10)]
    for split, n in (("validation", NUM_VAL), ("test", NUM_TEST), ("eval_train", 20)):
        request = DataRequest(split, data_dir, 4, 3, rank=rank, world_size=2, num_examples=n)
        got[split] = rows_of(list(criteo.input_iterator(config(), request)))
    gathered = [None, None]
    dist.all_gather_object(gathered, got)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters importing torch: ~25 s on a 2-core machine
def test_two_gloo_ranks_shard_train_and_eval(data_dir, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ranks.pt")
    mp.spawn(_ranks_worker, args=(data_dir, port, out), nprocs=2, join=True)
    ranks = torch.load(out, weights_only=False)
    single = take(criteo.input_iterator(config(), DataRequest("train", data_dir, 6, seed=4)), 10)
    for k in range(10):
        joined = torch.cat([ranks[0]["train"][k], ranks[1]["train"][k]])
        assert torch.equal(joined, single[k]["inputs"])
    for split, n in (("validation", NUM_VAL), ("test", NUM_TEST), ("eval_train", 20)):
        request = dataclasses.replace(
            DataRequest(split, data_dir, 8, 3, num_examples=n), num_examples=n
        )
        whole = rows_of(list(criteo.input_iterator(config(), request)))
        assert np.array_equal(np.concatenate([ranks[0][split], ranks[1][split]]), whole), split
        assert len(ranks[0][split]) and len(ranks[1][split])
