"""WMT setup on a tiny parallel corpus in the official raw formats, packing row by row, loaders.

python -m pytest tests/test_wmt_data.py
"""

from __future__ import annotations

import io
import os
import random
import tarfile

import numpy as np
import pytest
import torch

from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.wmt.data import Corpus, input_iterator, pack_block

WORDS_DE = "der die das Haus ist klein groß und ein Hund Katze sieht schnell heute".split()
WORDS_EN = "the house is small big and a dog cat sees fast today".split()


def _sentences(rng: random.Random, words: list[str], n: int) -> list[str]:
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) + "." for _ in range(n)]


def _add(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _sgm(lines: list[str], kind: str, lang: str) -> str:
    segs = "\n".join(f'<seg id="{i + 1}">{s}</seg>' for i, s in enumerate(lines))
    return f'<{kind} setid="newstest" srclang="de" trglang="en">\n<doc docid="d1" genre="news">\n{segs}\n</doc>\n</{kind}>\n'


def write_raw_corpus(folder: str, seed: int = 0) -> dict[str, int]:
    """A tiny WMT de-en release: Europarl as a .tgz, the other corpora extracted, .sgm eval sets."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    counts = {}
    de, en = _sentences(rng, WORDS_DE, 40), _sentences(rng, WORDS_EN, 40)
    de[3] = ""  # an empty side: the pair is dropped (as TFDS)
    with tarfile.open(os.path.join(folder, "training-parallel-europarl-v7.tgz"), "w:gz") as tar:
        _add(tar, "training/europarl-v7.de-en.de", "\n".join(de) + "\n")
        _add(tar, "training/europarl-v7.de-en.en", "\n".join(en) + "\n")
    counts["train"] = 39
    for base, n in (
        ("commoncrawl.de-en", 30),
        ("news-commentary-v12.de-en", 20),
        ("rapid2016.de-en", 25),
    ):
        for lang, words in (("de", WORDS_DE), ("en", WORDS_EN)):
            with open(os.path.join(folder, f"{base}.{lang}"), "w") as f:
                f.write("\n".join(_sentences(rng, words, n)) + "\n")
        counts["train"] += n
    os.makedirs(os.path.join(folder, "dev"), exist_ok=True)
    for name, split, n in (
        ("dev/newstest2013", "validation", 12),
        ("newstest2014-deen", "test", 9),
    ):
        src = _sgm(_sentences(rng, WORDS_DE, n), "srcset", "de")
        ref = _sgm(_sentences(rng, WORDS_EN, n), "refset", "en")
        if split == "validation":
            paths = (f"{name}-src.de.sgm", f"{name}-ref.en.sgm")
        else:
            paths = (f"{name}-src.de.sgm", f"{name}-ref.en.sgm")
        for path, text in zip(paths, (src, ref)):
            with open(os.path.join(folder, path), "w") as f:
                f.write(text)
        counts[split] = n
    return counts


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmt")
    archives = str(root / "raw")
    counts = write_raw_corpus(archives)
    args = ["wmt", "--data-dir", str(root / "data"), "--archives-dir", archives]
    assert data_main([*args, "--vocab-size", "40"]) == 1  # counts differ from the official ones
    assert data_main([*args, "--vocab-size", "40", "--allow-partial"]) == 0
    return root / "data", counts, args


def test_setup_counts_tokenizer_and_resume(prepared, capsys):
    data, counts, args = prepared
    for split in ("train", "validation", "test"):
        assert Corpus(str(data / "wmt"), split).size == counts[split]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(data / "wmt" / "wmt_sentencepiece_model"))
    assert sp.get_piece_size() == 40 and sp.id_to_piece(2) == "</s>" and sp.unk_id() == 0
    corpus = Corpus(str(data / "wmt"), "test")
    inputs, targets = corpus.pair(0)
    assert inputs[-1] == 2 and targets[-1] == 2  # EOS appended
    # A re-run finds every split done and redoes nothing.
    stamp = os.path.getmtime(data / "wmt" / "train_inputs.npy")
    assert data_main([*args, "--vocab-size", "40", "--allow-partial"]) == 0
    assert os.path.getmtime(data / "wmt" / "train_inputs.npy") == stamp
    # A missing file is re-made; nothing else is.
    os.remove(data / "wmt" / "test_targets.npy")
    assert data_main([*args, "--vocab-size", "40", "--allow-partial"]) == 0
    assert os.path.getmtime(data / "wmt" / "train_inputs.npy") == stamp
    assert Corpus(str(data / "wmt"), "test").size == counts["test"]
    assert not [p for p in os.listdir(data / "wmt") if p.startswith(".tmp")]


def test_missing_source_is_named(tmp_path, capsys):
    write_raw_corpus(str(tmp_path / "raw"))
    os.remove(tmp_path / "raw" / "rapid2016.de-en.en")
    code = data_main(
        [
            "wmt",
            "--data-dir",
            str(tmp_path / "d"),
            "--archives-dir",
            str(tmp_path / "raw"),
            "--allow-partial",
            "--vocab-size",
            "40",
            "--no-download",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "missing in" in err and "rapid2016.tgz (--no-download)" in err
    assert "http://data.statmt.org/wmt18/translation-task/rapid2016.tgz" in err
    assert "--archives-dir" in err


def test_truncated_archive_and_unequal_sides_are_named(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_raw_corpus(str(raw))
    args = ["wmt", "--data-dir", str(tmp_path / "d"), "--archives-dir", str(raw)]
    args += ["--allow-partial", "--vocab-size", "40"]
    tgz = raw / "training-parallel-europarl-v7.tgz"
    tgz.write_bytes(tgz.read_bytes()[:100])
    assert data_main(args) == 1
    assert "training-parallel-europarl-v7.tgz is not a readable .tgz" in capsys.readouterr().err
    write_raw_corpus(str(raw))
    with open(raw / "commoncrawl.de-en.en", "a") as f:
        f.write("one more line\n")
    assert data_main(args) == 1
    err = capsys.readouterr().err
    assert "commoncrawl.de-en.de has 31 lines but commoncrawl.de-en.en has 32" in err
    assert not (tmp_path / "d" / "wmt" / "train_inputs.npy").exists()


def test_packing_row_by_row_against_hand_built_rows():
    a = (np.array([8, 7, 2]), np.array([4, 2]))
    b = (np.array([3, 0, 5, 2]), np.array([5, 6, 2]))  # an <unk> (0): counts 3 non-zero ids
    c = (np.array([9, 9, 9, 9, 2]), np.array([1, 2]))
    out = pack_block([a, b, c], length=8)
    assert out["inputs"].tolist() == [[8, 7, 2, 3, 0, 5, 0, 0], [9, 9, 9, 9, 2, 0, 0, 0]]
    assert out["inputs_position"].tolist() == [[0, 1, 2, 0, 1, 2, 0, 0], [0, 1, 2, 3, 4, 0, 0, 0]]
    assert out["inputs_segmentation"].tolist() == [
        [1, 1, 1, 2, 0, 2, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],
    ]
    assert out["targets"].tolist() == [[4, 2, 5, 6, 2, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0]]
    assert out["targets_position"].tolist() == [[0, 1, 0, 1, 2, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]]
    assert out["targets_segmentation"].tolist() == [
        [1, 1, 2, 2, 2, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
    ]
    # The targets decide too: a row closes when either side would overflow.
    out = pack_block(
        [(np.array([1, 2]), np.array([1, 1, 1, 2])), (np.array([1, 2]), np.array([3, 3, 3, 3, 2]))],
        8,
    )
    assert len(out["inputs"]) == 2


def _request(data, split, batch, rank=0, world=1, num=None, seed=0):
    return DataRequest(split, str(data), batch, seed, rank, world, num)


def test_train_batches_keys_blocks_shards_and_resume(prepared):
    data, counts, _ = prepared
    config = load_config("wmt")
    config = type(config).from_dict(
        {**config.__dict__, "data": {**config.data, "max_length": 24, "pack_block": 16}}
    )
    it = input_iterator(config, _request(data, "train", 4))
    batches = [next(it) for _ in range(7)]
    keys = (
        "inputs",
        "inputs_position",
        "inputs_segmentation",
        "targets",
        "targets_position",
        "targets_segmentation",
        "weights",
    )
    assert tuple(batches[0]) == keys
    assert all(v.dtype == torch.int64 and v.shape == (4, 24) for v in batches[0].values())
    # Every example packed once per epoch: count segments over the first epoch's blocks.
    segs = sum(int(b["targets_segmentation"].max(1).values.sum()) for b in batches)
    assert segs > 0
    # Two ranks split each global batch into contiguous halves.
    r0 = input_iterator(config, _request(data, "train", 2, 0, 2))
    r1 = input_iterator(config, _request(data, "train", 2, 1, 2))
    for b in batches[:3]:
        x0, x1 = next(r0), next(r1)
        assert torch.equal(torch.cat([x0["inputs"], x1["inputs"]]), b["inputs"])
    # Resume mid-block gives the same next batches.
    it2 = input_iterator(config, _request(data, "train", 4))
    for _ in range(3):
        next(it2)
    state = it2.state_dict()
    it3 = input_iterator(config, _request(data, "train", 4))
    it3.load_state_dict(state)
    for b in batches[3:]:
        assert torch.equal(next(it3)["targets"], b["targets"])
    with pytest.raises(PipelineStateError):
        input_iterator(config, _request(data, "train", 4, seed=1)).load_state_dict(state)


def test_eval_batches_padded_once_across_ranks(prepared):
    data, counts, _ = prepared
    config = load_config("wmt")
    rows = []
    for rank in range(2):
        for b in input_iterator(
            config, _request(data, "validation", 5, rank, 2, counts["validation"])
        ):
            assert tuple(b) == ("inputs", "targets", "weights") and b["inputs"].shape[1] == 256
            assert torch.equal(b["weights"], (b["targets"] > 0).long())
            rows += [tuple(r.tolist()) for r in b["inputs"]]
    assert len(rows) == counts["validation"] == len(set(rows))
    eval_train = list(input_iterator(config, _request(data, "eval_train", 8, num=10)))
    assert sum(len(b["inputs"]) for b in eval_train) == 10


def test_missing_data_names_the_setup_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m algoperf_torch.data wmt"):
        input_iterator(load_config("wmt"), _request(tmp_path, "train", 4))


TINY_MODEL = [
    "workload.model.d_model=16",
    "workload.model.nhead=2",
    "workload.model.d_hid=16",
    "workload.model.nlayers=1",
    "workload.model.ntoken=40",
    "workload.data.max_decode_len=24",
    "workload.eval_batch_size=4",
    "workload.compile=off",
    "batch_size=4",
    "max_steps=3",
]


def test_three_step_trial_on_the_prepared_files_decodes_and_scores_bleu(prepared, tmp_path):
    from conftest import run_trial

    data, counts, _ = prepared
    summary = run_trial(
        tmp_path,
        [
            "workload=wmt",
            f"data.data_dir={data}",
            "data.num_workers=0",
            "workload.num_eval_train_examples=6",
            "workload.num_validation_examples=5",
            "workload.num_test_examples=3",
            *TINY_MODEL,
        ],
    )
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1
    import csv

    trial = tmp_path / "wmt_nadamw" / "wmt_pytorch" / "trial_1"
    rows = list(csv.DictReader(open(trial / "eval_measurements.csv")))
    assert {"validation/bleu", "test/bleu", "train/bleu", "validation/loss"} <= set(rows[-1])
    assert 0.0 <= float(rows[-1]["validation/bleu"]) <= 100.0


@pytest.mark.parametrize("name", ["wmt", "wmt_glu_tanh"])
def test_three_step_trial_on_synthetic_data(tmp_path, name):
    from conftest import run_trial

    summary = run_trial(
        tmp_path,
        [
            f"workload={name}",
            "data=synthetic",
            "data.synthetic_eval_examples=4",
            "workload.model.max_len=32",
            *TINY_MODEL,
        ],
    )
    assert summary["global_step"] == 3 and summary["num_evals"] >= 1


@pytest.mark.slow
def test_two_ranks_score_the_same_bleu_as_one_process(prepared, tmp_path):
    """Eval shards cover each sentence once and the BLEU statistics are summed over ranks."""
    import csv
    import subprocess
    import sys

    from conftest import REPO

    data, _, _ = prepared
    args = [
        "workload=wmt",
        f"data.data_dir={data}",
        "data.num_workers=0",
        "workload.num_eval_train_examples=8",
        "workload.num_validation_examples=12",
        "workload.num_test_examples=9",
        "device=cpu",
        "progress=off",
        f"experiment_dir={tmp_path}",
        *TINY_MODEL,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        "single": [sys.executable, "-m", "algoperf_torch"],
        "ddp": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "algoperf_torch"],
    }
    rows = {}
    for name, cmd in runs.items():
        proc = subprocess.run(
            [*cmd, *args, f"experiment_name={name}"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        trial = tmp_path / name / "wmt_pytorch" / "trial_1"
        rows[name] = list(csv.DictReader(open(trial / "eval_measurements.csv")))
    assert len(rows["single"]) == len(rows["ddp"])
    for a, b in zip(rows["single"], rows["ddp"]):
        for key in ("validation/bleu", "test/bleu", "validation/loss", "train/accuracy"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-6), key
