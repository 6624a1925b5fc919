"""WMT and Criteo 1TB setups download missing archives through ``--mirror`` (a ``file://`` URL
onto a folder of tiny raw-format archives) and prepare the same output as from local archives.

python -m pytest tests/test_data_download.py
"""

from __future__ import annotations

import os
import tarfile

import numpy as np
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
