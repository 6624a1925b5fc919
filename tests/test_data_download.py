"""WMT and Criteo 1TB setups download missing archives through ``--mirror`` (a ``file://`` URL
onto a folder of tiny raw-format archives) and prepare the same output as from local archives.

python -m pytest tests/test_data_download.py
"""

from __future__ import annotations

import os
import tarfile

import numpy as np
from criteo_raw import LINES_PER_CHUNK, SMALL_DAYS, write_day
from test_wmt_data import write_raw_corpus

from algoperf_torch.data.__main__ import main as data_main

# The extracted files write_raw_corpus leaves beside its Europarl .tgz, and the official
# archive and member path each belongs to.
WMT_PACKING = {
    "training-parallel-commoncrawl.tgz": {
        "commoncrawl.de-en.de": "commoncrawl.de-en.de",
        "commoncrawl.de-en.en": "commoncrawl.de-en.en",
    },
    "training-parallel-nc-v12.tgz": {
        "news-commentary-v12.de-en.de": "training/news-commentary-v12.de-en.de",
        "news-commentary-v12.de-en.en": "training/news-commentary-v12.de-en.en",
    },
    "rapid2016.tgz": {
        "rapid2016.de-en.de": "rapid2016.de-en.de",
        "rapid2016.de-en.en": "rapid2016.de-en.en",
    },
    "dev.tgz": {
        "dev/newstest2013-src.de.sgm": "dev/newstest2013-src.de.sgm",
        "dev/newstest2013-ref.en.sgm": "dev/newstest2013-ref.en.sgm",
        "newstest2014-deen-src.de.sgm": "dev/newstest2014-deen-src.de.sgm",
        "newstest2014-deen-ref.en.sgm": "dev/newstest2014-deen-ref.en.sgm",
    },
}


def pack_wmt_mirror(raw: str, mirror: str) -> None:
    """The official .tgz archives of the tiny corpus in ``raw``, written into ``mirror``."""
    os.makedirs(mirror, exist_ok=True)
    europarl = "training-parallel-europarl-v7.tgz"
    os.link(os.path.join(raw, europarl), os.path.join(mirror, europarl))
    for archive, members in WMT_PACKING.items():
        with tarfile.open(os.path.join(mirror, archive), "w:gz") as tar:
            for src, member in members.items():
                tar.add(os.path.join(raw, src), arcname=member)


def outputs(folder) -> dict[str, np.ndarray]:
    return {
        n: np.load(os.path.join(folder, n))
        for n in sorted(os.listdir(folder))
        if n.endswith(".npy")
    }


def test_wmt_downloads_missing_archives_from_the_mirror(tmp_path, capsys):
    raw, mirror = str(tmp_path / "raw"), str(tmp_path / "mirror")
    write_raw_corpus(raw)
    pack_wmt_mirror(raw, mirror)
    common = ["--allow-partial", "--vocab-size", "40"]
    assert (
        data_main(["wmt", "--data-dir", str(tmp_path / "a"), "--archives-dir", raw, *common]) == 0
    )
    data = tmp_path / "b"
    url = "file://" + os.path.abspath(mirror)
    assert data_main(["wmt", "--data-dir", str(data), "--mirror", url, *common]) == 0
    downloads = data / "wmt" / "downloads"
    assert sorted(os.listdir(downloads)) == sorted(
        [*WMT_PACKING, "training-parallel-europarl-v7.tgz"]
    )
    for name in os.listdir(downloads):  # complete copies, nothing left half-written
        assert (downloads / name).read_bytes() == open(os.path.join(mirror, name), "rb").read()
    direct, downloaded = outputs(tmp_path / "a" / "wmt"), outputs(data / "wmt")
    assert direct.keys() == downloaded.keys() and len(direct) == 12
    for name in direct:
        np.testing.assert_array_equal(direct[name], downloaded[name], err_msg=name)


def test_wmt_failed_download_names_file_url_and_archives_dir(tmp_path, capsys):
    raw = str(tmp_path / "raw")
    write_raw_corpus(raw)
    os.remove(os.path.join(raw, "rapid2016.de-en.de"))
    url = "file://" + str(tmp_path / "empty-mirror")
    args = ["wmt", "--data-dir", str(tmp_path / "d"), "--archives-dir", raw, "--mirror", url]
    assert data_main([*args, "--allow-partial", "--vocab-size", "40"]) == 1
    err = capsys.readouterr().err
    assert "rapid2016.tgz" in err and url + "/rapid2016.tgz" in err and "--archives-dir" in err
    assert not [n for n in os.listdir(raw) if n.startswith("rapid2016.tgz")]  # no partial file


def _criteo(data, *extra) -> int:
    args = ["criteo1tb", "--data-dir", str(data), "--lines-per-chunk", str(LINES_PER_CHUNK)]
    return data_main([*args, "--workers", "1", "--allow-partial", *extra])


def test_criteo_downloads_missing_days_from_the_mirror_and_keeps_finished_ones(tmp_path, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for day, lines in SMALL_DAYS.items():
        write_day(str(mirror), day, lines)  # all gzipped, as served
    assert _criteo(tmp_path / "a", "--archives-dir", str(mirror), "--no-download") == 0
    raw = tmp_path / "b" / "criteo1tb" / "raw"  # the default archives folder
    raw.mkdir(parents=True)
    os.link(mirror / "day_0.gz", raw / "day_0.gz")  # a day downloaded by an earlier run
    stamp = os.stat(raw / "day_0.gz").st_mtime_ns
    url = "file://" + str(mirror)
    assert _criteo(tmp_path / "b", "--mirror", url) == 0
    err = capsys.readouterr().err
    assert "day_3.gz" in err and url + "/day_3.gz" in err  # absent days: a warning
    assert sorted(os.listdir(raw)) == sorted(f"day_{d}.gz" for d in SMALL_DAYS)
    assert os.stat(raw / "day_0.gz").st_mtime_ns == stamp  # kept, not fetched again
    for day in SMALL_DAYS:
        assert (raw / f"day_{day}.gz").read_bytes() == (mirror / f"day_{day}.gz").read_bytes()
    a, b = tmp_path / "a" / "criteo1tb", tmp_path / "b" / "criteo1tb"
    direct, downloaded = outputs(a), outputs(b)
    assert direct.keys() == downloaded.keys() and len(direct) > 4
    for name in direct:
        np.testing.assert_array_equal(direct[name], downloaded[name], err_msg=name)
    assert (a / "index.json").read_text() == (b / "index.json").read_text()


def test_criteo_no_download_names_the_missing_days(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    for day in range(24):
        if day != 5:
            write_day(str(raw), day, 3)
    args = ["criteo1tb", "--data-dir", str(tmp_path / "d"), "--archives-dir", str(raw)]
    assert data_main([*args, "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "lacks day_5.gz (--no-download)" in err and "--archives-dir" in err
    assert "https://storage.googleapis.com/criteo-cail-datasets/day_N.gz" in err
    assert not (tmp_path / "d" / "criteo1tb" / "index.json").exists()
