"""finewebedu_lm data: the setup on small FineWeb-Edu-format parquet files, then the pipeline.

The parquet files hold made-up English-like documents in FineWeb-Edu's columns; the tokenizer is
a tiny byte-level BPE trained here (no download). The GPT-2 tokenizer is used only where its
files are cached on this machine.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, run_trial

from algoperf_torch.data import finewebedu_lm as setup
from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.finewebedu_lm import data

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
tokenizers = pytest.importorskip("tokenizers")

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no "
    "learning students school science water energy history teachers research health children"
).split()
SMALL = dict(
    vocab_size=320, seq_len=16, model_dim=32, num_heads=4, num_layers=2, mlp_dim=48, multiple_of=16
)
SMALL_OVERRIDES = [f"workload.model.{k}={v}" for k, v in SMALL.items()]


def make_documents(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(30, 160)))
        docs.append(" ".join(words).capitalize() + ".")
    docs[3] = ""  # an empty document gets no EOS and no tokens
    return docs


def write_parquet(folder, docs: list[str], files: int = 3) -> list[str]:
    """FineWeb-Edu's layout: sample/10BT/NNN_00000.parquet, columns text, id, ..., two row groups."""
    out = os.path.join(folder, "sample", "10BT")
    os.makedirs(out, exist_ok=True)
    paths = []
    per = math.ceil(len(docs) / files)
    for f in range(files):
        part = docs[f * per : (f + 1) * per]
        table = pa.table(
            {
                "text": part,
                "id": [f"<urn:uuid:{f}-{i}>" for i in range(len(part))],
                "dump": ["CC-MAIN-2024-10"] * len(part),
                "url": [f"https://example.org/{f}/{i}" for i in range(len(part))],
                "language": ["en"] * len(part),
                "language_score": [0.95] * len(part),
                "token_count": [len(t.split()) for t in part],
                "score": [3.1] * len(part),
                "int_score": [3] * len(part),
            }
        )
        path = os.path.join(out, f"{f:03d}_00000.parquet")
        pq.write_table(table, path, row_group_size=max(1, len(part) // 2))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Parquet files + a tiny BPE (tokenizer.json) + the prepared dataset."""
    root = tmp_path_factory.mktemp("fineweb")
    docs = make_documents(90, seed=0)
    write_parquet(root / "archives", docs)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[setup.EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(docs, trainer)
    tok_path = str(root / "tokenizer.json")
    tok.save(tok_path)
    args = [
        "finewebedu_lm",
        "--data-dir",
        str(root / "data"),
        "--archives-dir",
        str(root / "archives"),
        "--tokenizer",
        tok_path,
        "--workers",
        "2",
        "--train-windows",
        "6",
        "--min-val-windows",
        "1",
    ]
    assert data_main(args) == 0
    return {"root": root, "docs": docs, "tok": tok, "tok_path": tok_path, "args": args}


def expected_streams(docs, tok, seed: int, train_windows: int):
    eos = tok.token_to_id(setup.EOS)
    per_doc = [tok.encode(d, add_special_tokens=False).ids + [eos] if d else [] for d in docs]
    order = np.random.default_rng(seed).permutation(len(docs))
    stream, train_docs = [], 0
    for d in order:
        if len(stream) >= train_windows * setup.WINDOW:
            break
        stream += per_doc[d]
        train_docs += 1
    train = stream[: train_windows * setup.WINDOW]
    val = [t for d in order[train_docs:] for t in per_doc[d]]
    return np.array(train, np.uint16), np.array(val, np.uint16)


def test_setup_writes_the_documented_split(corpus, capsys):
    folder = corpus["root"] / "data" / "finewebedu_lm"
    meta = json.load(open(folder / "meta.json"))
    train, val = expected_streams(corpus["docs"], corpus["tok"], 0, 6)
    assert np.array_equal(np.fromfile(folder / "train.bin", np.uint16), train)
    assert np.array_equal(np.fromfile(folder / "val.bin", np.uint16), val)
    assert meta["splits"]["train"] == {
        "tokens": 6 * 1025,
        "windows": 6,
        "documents": meta["splits"]["train"]["documents"],
    }
    assert meta["splits"]["val"]["tokens"] == len(val) and meta["num_documents"] == 90
    assert meta["eos_id"] == corpus["tok"].token_to_id(setup.EOS)
    assert not (folder / "work").exists()  # work files go once the streams are written
    assert not [p for p in os.listdir(folder) if p.startswith(".")]  # no temporary leftovers
    capsys.readouterr()
    assert data_main(corpus["args"]) == 0  # idempotent
    assert "nothing to do" in capsys.readouterr().out


def test_official_counts_are_enforced_unless_partial(corpus, tmp_path, capsys):
    base = ["finewebedu_lm", "--data-dir", str(tmp_path), "--archives-dir"]
    base += [str(corpus["root"] / "archives"), "--tokenizer", corpus["tok_path"], "--workers", "1"]
    assert data_main(base) == 1
    err = capsys.readouterr().err
    assert "8,749,870 train" in err and "--allow-partial" in err
    assert not (tmp_path / "finewebedu_lm" / "meta.json").exists()
    assert data_main([*base, "--allow-partial"]) == 0
    assert "warning" in capsys.readouterr().err
    meta = json.load(open(tmp_path / "finewebedu_lm" / "meta.json"))
    assert meta["splits"]["train"]["documents"] == 81  # 90% of the 90 shuffled documents


def test_interrupted_setup_resumes_and_bad_files_are_named(corpus, tmp_path, monkeypatch, capsys):
    args = [a if a != str(corpus["root"] / "data") else str(tmp_path / "d") for a in corpus["args"]]
    args[args.index("--workers") + 1] = "1"

    def interrupted(*a, **k):
        raise setup.SetupError("interrupted")

    monkeypatch.setattr(setup, "write_streams", interrupted)
    assert data_main(args) == 1
    folder = tmp_path / "d" / "finewebedu_lm"
    assert not (folder / "meta.json").exists() and (folder / "work").is_dir()
    monkeypatch.undo()
    capsys.readouterr()
    assert data_main(args) == 0
    assert "tokenising 0 of 6 row groups" in capsys.readouterr().out
    reference = corpus["root"] / "data" / "finewebedu_lm"
    for name in ("train.bin", "val.bin"):
        assert (folder / name).read_bytes() == (reference / name).read_bytes()
    bad = tmp_path / "bad"
    write_parquet(bad, make_documents(10, seed=1), files=2)
    (bad / "sample" / "10BT" / "001_00000.parquet").write_bytes(b"PAR1 not really")
    args[args.index("--archives-dir") + 1] = str(bad)
    assert data_main(args) == 1
    assert "001_00000.parquet is not a readable parquet file" in capsys.readouterr().err


def test_gpt2_tokenizer_path_where_its_files_are_cached(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache("gpt2", "tokenizer.json")
    if not isinstance(cached, str):
        pytest.skip("the GPT-2 tokenizer.json is not in the Hugging Face cache (no internet here)")
    facts = setup.tokenizer_facts(cached)
    assert facts["vocab_size"] == 50257 and facts["eos_id"] == 50256
    assert setup.load_tokenizer(cached).encode("Hello world").ids == [15496, 995]


# --- the pipeline on the prepared files ----------------------------------------------------


def config(**changes):
    c = load_config("finewebedu_lm")
    return dataclasses.replace(c, model={**c.model, **SMALL}, **changes)


def request(corpus, split, batch_size, rank=0, world_size=1, num_examples=None, seed=5):
    return DataRequest(
        split=split,
        data_dir=str(corpus["root"] / "data"),
        batch_size=batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_examples=num_examples,
    )


def windows_of(corpus, name: str) -> np.ndarray:
    flat = np.fromfile(corpus["root"] / "data" / "finewebedu_lm" / f"{name}.bin", np.uint16)
    return flat[: len(flat) // 17 * 17].reshape(-1, 17).astype(np.int64)


def test_train_batches_are_shuffled_windows_and_resume_exactly(corpus, tmp_path):
    windows = windows_of(corpus, "train")  # 6 x 1025 tokens = 361 windows of 17
    it = data.input_iterator(config(data={"shuffle_buffer": 8}), request(corpus, "train", 19))
    seen = []
    for step in range(40):  # 760 windows: more than two epochs
        batch = next(it)
        assert batch["inputs"].dtype == torch.int32 and batch["targets"].dtype == torch.int64
        assert batch["inputs"].shape == (19, 16) and batch["weights"] is None
        assert torch.equal(batch["inputs"][:, 1:].long(), batch["targets"][:, :-1])
        rows = torch.cat([batch["inputs"][:, :1].long(), batch["targets"]], dim=1).numpy()
        seen += [int(np.flatnonzero((windows == r).all(1))[0]) for r in rows]
        if step == 11:
            state = it.state_dict()
            torch.save(state, tmp_path / "s.pt")
            after = [next(it)["targets"] for _ in range(30)]
            it.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    n = len(windows)
    assert sorted(seen[:n]) == list(range(n))  # each window once per epoch
    assert all(w - t <= 8 for t, w in enumerate(seen[:n]))  # a buffer of 8: close to stored order
    assert seen[:n] != list(range(n))
    resumed = data.input_iterator(config(data={"shuffle_buffer": 8}), request(corpus, "train", 19))
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert all(torch.equal(a, next(resumed)["targets"]) for a in after)
    with pytest.raises(PipelineStateError, match="seed"):
        data.input_iterator(config(), request(corpus, "train", 19, seed=6)).load_state_dict(state)


def test_two_ranks_split_each_global_batch(corpus):
    one = data.input_iterator(config(), request(corpus, "train", 8))
    ranks = [data.input_iterator(config(), request(corpus, "train", 4, r, 2)) for r in range(2)]
    for _ in range(5):
        whole = next(one)["targets"]
        assert torch.equal(whole, torch.cat([next(r)["targets"] for r in ranks]))


def test_eval_splits_are_ordered_padded_and_sharded(corpus):
    val = windows_of(corpus, "val")
    # 10 examples at a global batch of 4: 3 batches = 12 windows, as the reference's take().
    per_rank = []
    for rank in range(2):
        it = data.input_iterator(config(), request(corpus, "validation", 2, rank, 2, 10))
        rows = []
        for batch in it:
            assert batch["weights"].shape == (2, 16) and batch["weights"].dtype == torch.float32
            keep = batch["weights"][:, 0] == 1
            assert torch.all(batch["weights"][~keep] == 0) and torch.all(
                batch["inputs"][~keep] == 0
            )
            whole = torch.cat([batch["inputs"][:, :1].long(), batch["targets"]], 1)[keep]
            rows.append(whole.numpy())
        per_rank.append(np.concatenate(rows))
    assert np.array_equal(np.concatenate(per_rank), val[:12])  # every window once, in order
    assert len(per_rank[0]) == len(per_rank[1]) == 6
    # The whole split (num_examples None) at a batch that does not divide it: the last batch
    # is padded to full size and the padding masked.
    batches = list(data.input_iterator(config(), request(corpus, "validation", 7)))
    assert len(batches) == math.ceil(len(val) / 7) and len(val) % 7
    assert all(b["inputs"].shape == (7, 16) for b in batches)
    assert batches[-1]["weights"].sum() == (len(val) % 7) * 16
    head = windows_of(corpus, "train")[:4]
    first = next(iter(data.input_iterator(config(), request(corpus, "eval_train", 4, 0, 1, 4))))
    assert np.array_equal(first["targets"].numpy(), head[:, 1:])
    with pytest.raises(ValueError, match="no 'test' split"):
        data.input_iterator(config(), request(corpus, "test", 4))


def test_missing_or_truncated_files_are_named(corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json is missing.*python -m algoperf_torch"):
        data.input_iterator(
            config(), dataclasses.replace(request(corpus, "train", 2), data_dir=str(tmp_path))
        )
    import shutil

    shutil.copytree(corpus["root"] / "data", tmp_path / "copy")
    path = tmp_path / "copy" / "finewebedu_lm" / "val.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="val.bin has .* bytes"):
        data.input_iterator(
            config(),
            dataclasses.replace(request(corpus, "validation", 2), data_dir=str(tmp_path / "copy")),
        )


def trial_args(corpus):
    return [
        "workload=finewebedu_lm",
        f"data.data_dir={corpus['root'] / 'data'}",
        "batch_size=4",
        "workload.eval_batch_size=4",
        "workload.eval_chunk_size=3",
        "workload.num_eval_train_examples=6",
        "workload.num_validation_examples=10",
        "workload.compile=off",
        *SMALL_OVERRIDES,
    ]


def test_three_step_trial_on_the_prepared_files(corpus, tmp_path):
    summary = run_trial(tmp_path, ["max_steps=3", *trial_args(corpus)])
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1
    rows = list(csv.DictReader(open(os.path.join(summary["trial_dir"], "eval_measurements.csv"))))
    assert math.log(SMALL["vocab_size"]) * 0.8 < float(rows[-1]["validation/loss"]) < 8


@pytest.mark.slow
def test_two_gloo_ranks_evaluate_each_window_once(corpus, tmp_path):
    """Two ranks and one process give the same validation loss (each window counted once)."""
    common = [*trial_args(corpus), "max_steps=1", "progress=off", "device=cpu"]
    common += [f"experiment_dir={tmp_path}", "seed=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (
        ("one", [sys.executable, "-m", "algoperf_torch"]),
        (
            "two",
            [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            + ["--nproc_per_node=2", "-m", "algoperf_torch"],
        ),
    ):
        proc = subprocess.run(
            [*launcher, *common, f"experiment_name={name}"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    loss = {}
    for name in ("one", "two"):
        trial = tmp_path / name / "finewebedu_lm_pytorch" / "trial_1"
        loss[name] = float(
            list(csv.DictReader(open(trial / "eval_measurements.csv")))[0]["validation/loss"]
        )
    # Same weights, same 12 windows; only the float32 sum order across ranks differs.
    assert loss["one"] == pytest.approx(loss["two"], rel=1e-5)


@pytest.mark.slow
def test_trial_on_the_prepared_files_resumes_exactly_after_sigkill(corpus, tmp_path):
    from test_resume import check_kills_resume_exactly

    check_kills_resume_exactly(tmp_path, [a for a in trial_args(corpus) if "chunk" not in a])


def test_download_failure_says_what_to_do(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert data_main(["finewebedu_lm", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "HuggingFaceFW/fineweb-edu" in err and "--archives-dir" in err
    assert not (tmp_path / "finewebedu_lm" / "meta.json").exists()
