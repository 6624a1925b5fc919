"""``python -m algoperf_torch.data criteo1tb`` on tiny day files in the raw official format.

Checks every prepared value against an independent computation (pure-Python Fingerprint64,
float32 arithmetic by hand), the chunk layout, an interrupted and re-run setup, the count
checks and the errors for bad input.
"""

from __future__ import annotations

import gzip
import json
import math
import os

import numpy as np
import pytest
from criteo_raw import LINES_PER_CHUNK, SMALL_DAYS, write_day, write_tiny
from test_criteo_hashing import fingerprint64_reference

from algoperf_torch.data import criteo1tb as setup
from algoperf_torch.data.__main__ import main as data_main
from algoperf_torch.workloads.criteo1tb.hashing import VOCAB_SIZES


def expected_row(line: str) -> np.ndarray:
    f = line.split("\t")
    row = [np.float32(0.0 if f[0] in ("", "-1") else float(f[0]))]
    for x in f[1:14]:
        v = np.float32(0.0 if x in ("", "-1") else float(x))
        row.append(np.float32(math.log(float(np.float32(max(v, np.float32(0)) + np.float32(1))))))
    for i, s in enumerate(f[14:]):
        s = "00000000" if s in ("", "-1") else s
        row.append(np.float32(fingerprint64_reference(f"{s}{i}".encode()) % VOCAB_SIZES[i]))
    return np.array(row, dtype=np.float32)


def run_setup(data_dir, archives, *extra) -> int:
    return data_main(
        [
            "criteo1tb",
            "--data-dir",
            str(data_dir),
            "--archives-dir",
            str(archives),
            "--lines-per-chunk",
            str(LINES_PER_CHUNK),
            "--workers",
            "1",
            "--no-download",  # the tiny days only, never the real ones
            *extra,
        ]
    )


@pytest.fixture
def tiny(tmp_path):
    raw = write_tiny(str(tmp_path / "raw"), days=SMALL_DAYS)
    return tmp_path, raw


def test_setup_writes_the_reference_chunks_with_exact_values(tiny, capsys):
    tmp_path, raw = tiny
    assert run_setup(tmp_path / "data", tmp_path / "raw", "--allow-partial") == 0
    out = tmp_path / "data" / "criteo1tb"
    index = json.loads((out / "index.json").read_text())
    assert index["files"]["day_23_02"] == 2 and index["files"]["day_0_04"] == 3
    assert index["days"] == {"0": 23, "1": 17, "2": 10, "23": 12}
    for day, lines in raw.items():
        chunks = [n for n in index["files"] if n.startswith(f"day_{day}_")]
        assert chunks == [f"day_{day}_{k:02d}" for k in range(math.ceil(len(lines) / 5))]
        got = np.concatenate([np.load(out / f"{n}.npy") for n in chunks])
        want = np.stack([expected_row(line) for line in lines])
        assert got.dtype == np.float32 and np.array_equal(got, want), day
    printed = capsys.readouterr()
    assert "rows/s" in printed.out and "missing days" in printed.err
    # A second run has nothing to do and leaves the files alone.
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert run_setup(tmp_path / "data", tmp_path / "raw", "--allow-partial") == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "index.json"}
    assert all(before[k] == v for k, v in after.items())
    assert "already prepared" in capsys.readouterr().out


def test_interrupted_setup_finishes_on_rerun_without_redoing_chunks(tiny, monkeypatch):
    tmp_path, _ = tiny
    calls = {"n": 0}
    real = setup.parse_lines

    def crash_on_fourth_block(block, where):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if killed while writing the fourth chunk
        return real(block, where)

    monkeypatch.setattr(setup, "parse_lines", crash_on_fourth_block)
    with pytest.raises(KeyboardInterrupt):
        run_setup(tmp_path / "data", tmp_path / "raw", "--allow-partial")
    out = tmp_path / "data" / "criteo1tb"
    assert not (out / "index.json").exists()
    done = sorted(p.name for p in out.glob("*.npy"))
    assert done == ["day_0_00.npy", "day_0_01.npy", "day_0_02.npy"]
    assert (out / ".day_0_03.npy.tmp").exists()  # the half-written chunk under its temp name
    stamps = {n: (out / n).stat().st_mtime_ns for n in done}

    monkeypatch.setattr(setup, "parse_lines", real)
    assert run_setup(tmp_path / "data", tmp_path / "raw", "--allow-partial") == 0
    assert {n: (out / n).stat().st_mtime_ns for n in done} == stamps
    assert not list(out.glob("*.tmp"))
    fresh = tmp_path / "fresh"
    assert run_setup(fresh, tmp_path / "raw", "--allow-partial") == 0
    for p in out.glob("*.npy"):
        assert np.array_equal(np.load(p), np.load(fresh / "criteo1tb" / p.name)), p.name


def test_counts_are_verified_without_allow_partial(tiny, capsys):
    tmp_path, _ = tiny
    assert run_setup(tmp_path / "data", tmp_path / "raw") == 1
    err = capsys.readouterr().err
    assert "day_3" in err and "--allow-partial" in err
    assert not (tmp_path / "data" / "criteo1tb" / "index.json").exists()
    # All 24 days present but far fewer lines than the official counts.
    for d in range(24):
        if d not in SMALL_DAYS:
            write_day(str(tmp_path / "raw"), d, 2)
    assert run_setup(tmp_path / "data", tmp_path / "raw") == 1
    err = capsys.readouterr().err
    assert "4,195,197,692" in err and "178,274,637" in err


def test_bad_inputs_get_one_clear_error(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    assert run_setup(tmp_path / "d", raw, "--allow-partial") == 1
    err = capsys.readouterr().err
    assert "lacks day_0.gz, day_1.gz" in err and "(--no-download)" in err
    lines = write_day(str(raw), 0, 8, gz=False)
    lines[6] = "\t".join(lines[6].split("\t")[:-1])  # 39 fields
    (raw / "day_0").write_text("".join(x + "\n" for x in lines))
    assert run_setup(tmp_path / "d", raw, "--allow-partial") == 1
    err = capsys.readouterr().err
    assert "day_0" in err and "line 2" in err and "39 tab-separated fields" in err
    os.remove(raw / "day_0")
    write_day(str(raw), 2, 400)
    data = (raw / "day_2.gz").read_bytes()
    (raw / "day_2.gz").write_bytes(data[: len(data) // 2])
    assert run_setup(tmp_path / "d", raw, "--allow-partial") == 1
    err = capsys.readouterr().err
    assert "day_2.gz is truncated or corrupt" in err
    out = tmp_path / "d" / "criteo1tb"
    assert not (out / "day_2.json").exists() and not (out / "index.json").exists()


def test_plain_and_gzipped_days_give_the_same_chunks(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_day(str(a), 5, 12, gz=True)
    write_day(str(b), 5, 12, gz=False)
    with gzip.open(a / "day_5.gz") as f:
        assert f.read() == (b / "day_5").read_bytes()
    assert run_setup(tmp_path / "da", a, "--allow-partial") == 0
    assert run_setup(tmp_path / "db", b, "--allow-partial") == 0
    for k in range(3):
        name = f"criteo1tb/day_5_{k:02d}.npy"
        assert np.array_equal(np.load(tmp_path / "da" / name), np.load(tmp_path / "db" / name))
