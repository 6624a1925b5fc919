"""LibriSpeech setup and pipeline on a tiny LibriSpeech of real (espeak-ng) speech.

The test writes the official layout (``LibriSpeech/<split>/<speaker>/<chapter>/`` with FLAC
files and ``.trans.txt``), packs the six ``.tar.gz`` archives, runs the real setup command and
reads the result through the real pipeline.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.data.librispeech import tokenizer_lines
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.__main__ import load_config
from algoperf_torch.workloads.librispeech_conformer import data as speech_data

FIXTURES = Path(__file__).parent / "fixtures" / "librispeech"
VOCAB = 32  # what SentencePiece can fill from the fixtures' few transcripts
LONG_TEXT = " ".join(["A VERY LONG TRANSCRIPT"] * 12)  # 275 characters > 256

# split -> [(speaker, chapter, [fixture numbers])]; "103" < "1034" as strings (sorted order).
LAYOUT = {
    "train-clean-100": [("1034", "121", [3, 4, 5]), ("103", "1240", [0, 1, 2])],
    "train-clean-360": [("201", "11", [0, 2, 4, 5])],
    "train-other-500": [("302", "7", [1, 3])],
    "dev-clean": [("401", "5", [0, 1, 2])],
    "dev-other": [("402", "6", [3, 4])],
    "test-clean": [("501", "9", [0, 3, 5])],
}


def fixture_utterances() -> list[tuple[np.ndarray, str]]:
    lines = (FIXTURES / "transcripts.txt").read_text().splitlines()
    out = []
    for line in lines:
        name, text = line.split(" ", 1)
        samples, rate = sf.read(FIXTURES / f"{name}.flac", dtype="int16")
        assert rate == 16000
        out.append((samples, text))
    return out


def flac_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, 16000, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_archives(folder: Path, extras: bool = True) -> dict[str, dict[str, tuple]]:
    """Write ``folder/<split>.tar.gz``; returns split -> {utt id: (samples, text)} kept.

    With ``extras``, train-clean-100 also gets one utterance of each skipped kind: a transcript
    over 256 characters, a transcript line without FLAC, and 320,001 samples.
    """
    folder.mkdir(parents=True, exist_ok=True)
    utterances = fixture_utterances()
    kept: dict[str, dict[str, tuple]] = {}
    for split, chapters in LAYOUT.items():
        kept[split] = {}
        with tarfile.open(folder / f"{split}.tar.gz", "w:gz") as tar:
            for c, (speaker, chapter, numbers) in enumerate(chapters):
                base = f"LibriSpeech/{split}/{speaker}/{chapter}"
                lines, files = [], []
                for k, n in enumerate(numbers):
                    utt = f"{speaker}-{chapter}-{k:04d}"
                    samples, text = utterances[n]
                    lines.append(f"{utt} {text}")
                    files.append((f"{base}/{utt}.flac", flac_bytes(samples)))
                    kept[split][utt] = (samples, text)
                if extras and split == "train-clean-100" and c == 1:
                    k = len(numbers)
                    lines.append(f"{speaker}-{chapter}-{k:04d} {LONG_TEXT}")
                    files.append((f"{base}/{speaker}-{chapter}-{k:04d}.flac", files[0][1]))
                    lines.append(f"{speaker}-{chapter}-{k + 1:04d} NO AUDIO HERE")
                    long_audio = np.resize(utterances[0][0], 320_001)
                    lines.append(f"{speaker}-{chapter}-{k + 2:04d} TOO LONG")
                    files.append(
                        (f"{base}/{speaker}-{chapter}-{k + 2:04d}.flac", flac_bytes(long_audio))
                    )
                trans = (
                    f"{base}/{speaker}-{chapter}.trans.txt",
                    ("\n".join(lines) + "\n").encode(),
                )
                members = [trans, *files] if c == 0 else [*files, trans]  # both orders occur
                for name, payload in members:
                    _add(tar, name, payload)
    return kept


def run_setup(data_dir: Path, archives: Path, *extra: str) -> int:
    args = ["librispeech", "--data-dir", str(data_dir), "--archives-dir", str(archives)]
    return data_main([*args, "--vocab-size", str(VOCAB), *extra])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("librispeech")
    kept = build_archives(root / "archives")
    assert run_setup(root / "data", root / "archives", "--allow-partial") == 0
    return root / "data", kept


def tiny_config(name: str = "librispeech_conformer", **sizes):
    config = load_config(name)
    config = dataclasses.replace(config, model={**config.model, "vocab_size": VOCAB})
    counts = {
        "num_train_examples": 12,
        "num_eval_train_examples": 4,
        "num_validation_examples": 5,
        "num_test_examples": 3,
    }
    return dataclasses.replace(config, **{**counts, **sizes})


def request(data_dir, split, batch_size=2, seed=0, rank=0, world_size=1, num=None, workers=0):
    return DataRequest(
        split=split,
        data_dir=str(data_dir),
        batch_size=batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_examples=num,
        num_workers=workers,
    )


# --- setup ---------------------------------------------------------------------------------


def test_setup_writes_sorted_filtered_utterances_and_the_tokenizer(prepared):
    import sentencepiece as spm

    data_dir, kept = prepared
    root = data_dir / "librispeech"
    info = json.loads((root / "train-clean-100" / "info.json").read_text())
    assert info["counts"] == {
        "raw": 9,
        "missing_audio": 1,
        "transcript_too_long": 1,
        "audio_too_long": 1,
        "kept": 6,
    }
    sp = spm.SentencePieceProcessor(model_file=str(root / "spm_model.vocab"))
    assert sp.get_piece_size() == VOCAB and sp.eos_id() == 2 and sp.unk_id() == 0
    for split, utts in kept.items():
        files = speech_data.SplitFiles(str(root / split))
        assert list(files.utterance_ids) == sorted(utts)  # "103-..." before "1034-..."
        for j, utt in enumerate(files.utterance_ids):
            samples, text = utts[utt]
            start, n = files.audio_start[j], files.audio_length[j]
            np.testing.assert_array_equal(files.audio[start : start + n], samples)
            ids = files.targets[files.target_offsets[j] : files.target_offsets[j + 1]]
            assert ids.tolist() == sp.encode(text) + [2]
            assert sp.decode(ids.tolist()) == text == files.transcripts[j]


def test_setup_is_idempotent(prepared, capsys):
    data_dir, _ = prepared
    index = data_dir / "librispeech" / "dev-clean" / "index.npz"
    before = index.stat().st_mtime_ns
    assert run_setup(data_dir, data_dir / "nowhere", "--allow-partial") == 0
    assert "dev-clean: already prepared" in capsys.readouterr().out
    assert index.stat().st_mtime_ns == before


def test_official_counts_are_enforced_without_allow_partial(tmp_path, capsys):
    build_archives(tmp_path / "a", extras=False)
    assert run_setup(tmp_path / "d", tmp_path / "a", "--splits", "train-clean-100") == 1
    err = capsys.readouterr().err
    assert "train-clean-100: 6 transcript lines, the official count is 28539" in err
    assert not (tmp_path / "d" / "librispeech" / "train-clean-100").exists()


def test_missing_truncated_and_corrupt_archives_are_clear_errors(tmp_path, capsys):
    build_archives(tmp_path / "a", extras=False)
    assert run_setup(tmp_path / "d", tmp_path / "empty", "--allow-partial") == 1
    assert "train-clean-100: archive" in capsys.readouterr().err
    data = (tmp_path / "a" / "train-clean-100.tar.gz").read_bytes()
    (tmp_path / "a" / "train-clean-100.tar.gz").write_bytes(data[: len(data) // 2])
    assert run_setup(tmp_path / "d", tmp_path / "a", "--allow-partial") == 1
    assert "train-clean-100.tar.gz: unreadable or truncated archive" in capsys.readouterr().err
    with tarfile.open(tmp_path / "a" / "train-clean-100.tar.gz", "w:gz") as tar:
        _add(tar, "LibriSpeech/train-clean-100/1/2/1-2.trans.txt", b"1-2-0000 HELLO\n")
        _add(tar, "LibriSpeech/train-clean-100/1/2/1-2-0000.flac", b"not a flac file")
    assert run_setup(tmp_path / "d", tmp_path / "a", "--allow-partial") == 1
    err = capsys.readouterr().err
    assert "LibriSpeech/train-clean-100/1/2/1-2-0000.flac: not a readable FLAC file" in err
    assert not (tmp_path / "d" / "librispeech" / "train-clean-100").exists()


def test_tokenizer_text_is_cut_before_the_line_that_crosses_the_limit():
    # Each line counts its newline: 3 + 3 = 6 characters fit a limit of 6, not of 5.
    assert tokenizer_lines(["AB", "CD", "EF"], 6) == ["AB", "CD"]
    assert tokenizer_lines(["AB", "CD", "EF"], 5) == ["AB"]


# --- pipeline ------------------------------------------------------------------------------


def test_batches_have_the_reference_layout(prepared):
    data_dir, kept = prepared
    config = tiny_config()
    batch = next(speech_data.input_iterator(config, request(data_dir, "validation", 3, num=5)))
    audio, audio_paddings = batch["inputs"]
    ids, target_paddings = batch["targets"]
    assert audio.shape == audio_paddings.shape == (3, 320_000)
    assert ids.shape == target_paddings.shape == (3, 256)
    assert {t.dtype for t in (audio, audio_paddings, ids, target_paddings)} == {torch.float32}
    first = sorted(kept["dev-clean"])[0]
    samples, _ = kept["dev-clean"][first]
    n = len(samples)
    np.testing.assert_array_equal(audio[0, :n].numpy(), samples.astype(np.float32))
    assert float(audio[0, n:].abs().sum()) == 0.0
    assert audio_paddings[0, :n].sum() == 0 and bool((audio_paddings[0, n:] == 1).all())
    length = int((target_paddings[0] == 0).sum())
    assert ids[0, length - 1] == 2 and float(ids[0, length:].abs().sum()) == 0.0


def _eval_indices(it) -> list[int]:
    return [i for batch in iter(it.sampler) for i in batch]


def test_eval_covers_each_example_once_across_ranks(prepared):
    data_dir, _ = prepared
    config = tiny_config()
    for split, num in (("validation", 5), ("test", 3), ("eval_train", 4)):
        shards = [
            _eval_indices(
                speech_data.input_iterator(config, request(data_dir, split, 2, 0, r, 2, num))
            )
            for r in range(2)
        ]
        assert not set(shards[0]) & set(shards[1])
        assert len(shards[0]) + len(shards[1]) == num
        if split == "eval_train":  # the reference's subset of the 12 train utterances
            assert sorted(shards[0] + shards[1]) == sorted(speech_data.eval_train_indices(12, 4, 0))
        else:
            assert sorted(shards[0] + shards[1]) == list(range(num))
    # One pass, the last batch smaller, then StopIteration.
    it = speech_data.input_iterator(config, request(data_dir, "validation", 2, num=5))
    assert [b["inputs"][0].shape[0] for b in it] == [2, 2, 1]


def test_train_ranks_split_each_global_batch(prepared):
    data_dir, _ = prepared
    config = tiny_config()
    whole = speech_data.input_iterator(config, request(data_dir, "train", 4)).sampler
    halves = [
        speech_data.input_iterator(config, request(data_dir, "train", 2, 0, r, 2)).sampler
        for r in range(2)
    ]
    streams = [iter(whole), *(iter(h) for h in halves)]
    for _ in range(5):  # 12 utterances: 3 global batches of 4 per epoch, across epochs
        w, a, b = (next(s) for s in streams)
        assert a + b == w and len(set(w)) == 4


def _targets(batch) -> torch.Tensor:
    return batch["targets"][0]


def test_train_resumes_to_the_same_batches_with_any_worker_count(prepared):
    data_dir, _ = prepared
    config = tiny_config()
    it = speech_data.input_iterator(config, request(data_dir, "train", 2, seed=5))
    for _ in range(3):
        next(it)
    state = torch.load(io.BytesIO(_save(it.state_dict())), weights_only=True)
    expected = [_targets(next(it)) for _ in range(6)]  # crosses an epoch boundary (6 per epoch)
    for workers in (0, 2):
        resumed = speech_data.input_iterator(
            config, request(data_dir, "train", 2, seed=5, workers=workers)
        )
        resumed.load_state_dict(state)
        for want in expected:
            torch.testing.assert_close(_targets(next(resumed)), want, rtol=0, atol=0)
    other = speech_data.input_iterator(config, request(data_dir, "train", 2, seed=6))
    with pytest.raises(PipelineStateError, match="seed"):
        other.load_state_dict(state)


def _save(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def test_missing_data_is_a_clear_error(tmp_path):
    config = tiny_config()
    with pytest.raises(speech_data.MissingLibriSpeechError, match="python -m algoperf_torch.data"):
        speech_data.input_iterator(config, request(tmp_path, "train"))


def test_metric_reads_the_prepared_tokenizer(prepared):
    data_dir, kept = prepared
    config = tiny_config()
    metric = speech_data.make_metric(config, str(data_dir))
    texts = [t for _, t in kept["dev-clean"].values()]
    ids = [metric.tokenizer.encode(t) + [2] for t in texts]
    assert metric.tokenizer.decode(ids) == texts  # EOS vanishes, text round-trips


def test_synthetic_batches_have_the_real_shapes_and_ranges():
    config = load_config("librispeech_deepspeech")
    batch = speech_data.synthetic_batch(config, 3, torch.Generator().manual_seed(0))
    audio, audio_paddings = batch["inputs"]
    ids, target_paddings = batch["targets"]
    assert audio.shape == (3, 320_000) and ids.shape == (3, 256)
    assert audio.abs().max() <= 32768 and torch.equal(audio, audio.round())
    assert float((audio * audio_paddings).abs().sum()) == 0.0
    lengths = (target_paddings == 0).sum(dim=1)
    assert bool((ids[torch.arange(3), lengths - 1] == 2).all())
    assert bool((lengths <= (audio_paddings == 0).sum(dim=1) // 640 // 3).all())


def test_setup_command_is_registered():
    from algoperf_torch.data.__main__ import DATASETS

    assert "librispeech" in DATASETS
    assert os.path.basename(DATASETS["librispeech"][0]) == "algoperf_torch.data.librispeech"


def test_a_split_without_the_tokenizer_is_refused_before_reading(tmp_path, capsys):
    build_archives(tmp_path / "a", extras=False)
    assert (
        run_setup(tmp_path / "d", tmp_path / "a", "--splits", "dev-clean", "--allow-partial") == 1
    )
    assert (
        "spm_model.vocab not found: it is trained from train-clean-100" in capsys.readouterr().err
    )
