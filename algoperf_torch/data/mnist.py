"""Download MNIST (the four idx .gz files) into ``<data-dir>/mnist/`` and check that they load.

Files and MD5 checksums are the ones torchvision's ``MNIST`` dataset publishes; the mirrors are
tried in order. Downloads are atomic (a temporary file renamed into place only after its checksum
matched) and the command is idempotent: files already present and valid are not fetched again.
This module also holds the small download helpers the other dataset commands share.

    python -m algoperf_torch.data mnist --data-dir ~/data
    python -m algoperf_torch.data mnist --data-dir ~/data --mirror http://host/mnist/ --skip-checksum
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request

import numpy as np

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# file name -> MD5 of the real file [torchvision/datasets/mnist.py ``MNIST.resources``].
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FOLDER = "mnist"
TIMEOUT_S = 60.0
CHUNK = 1 << 20


class SetupError(Exception):
    """A dataset could not be prepared; the message says why and what to try (no traceback)."""


def md5sum(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: str, md5: str | None) -> bool:
    """``path`` exists and, unless ``md5`` is ``None``, has that checksum."""
    return os.path.isfile(path) and (md5 is None or md5sum(path) == md5)


def download(url: str, dest: str, md5: str | None) -> None:
    """Fetch ``url`` to ``dest`` atomically: a temp file beside it, renamed once complete and valid.

    Raises:
        SetupError: network or HTTP failure (naming the URL), or a checksum mismatch.
    """
    folder = os.path.dirname(dest) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(dest) + ".", suffix=".part", dir=folder)
    print(f"  downloading {url}", flush=True)
    try:
        digest = hashlib.md5()
        size = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            expected = resp.headers.get("Content-Length")
        # urllib's read(n) returns b"" on a dropped connection instead of raising: check the size.
        if expected is not None and size != int(expected):
            raise SetupError(f"could not download {url}: got {size} of {expected} bytes")
        if md5 is not None and digest.hexdigest() != md5:
            raise SetupError(
                f"checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}. The "
                "mirror serves a different file; use another --mirror, or --skip-checksum if "
                "you trust it"
            )
        os.chmod(tmp, 0o644)  # mkstemp made it private to us
        os.replace(tmp, dest)
        print(f"  downloaded {url} ({size / 1e6:.1f} MB)")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        # URLError covers HTTP errors; OSError timeouts and resets; ValueError a malformed URL.
        http_error = isinstance(e, urllib.error.HTTPError)
        reason = e if http_error else getattr(e, "reason", None) or e
        raise SetupError(f"could not download {url}: {reason}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch(name: str, folder: str, mirrors: list[str], md5: str | None) -> bool:
    """Make ``folder/name`` present and valid, trying each mirror; True if it was downloaded."""
    dest = os.path.join(folder, name)
    if is_valid(dest, md5):
        return False
    if os.path.exists(dest):
        print(f"  {dest} fails its checksum; downloading it again")
    errors = []
    for mirror in mirrors:
        try:
            download(mirror.rstrip("/") + "/" + name, dest, md5)
            return True
        except SetupError as e:
            errors.append(str(e))
    raise SetupError("\n".join(errors))


def add_download_arguments(parser: argparse.ArgumentParser, default_mirror: str) -> None:
    """The ``--mirror`` and ``--skip-checksum`` options every download command shares."""
    parser.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help=f"base URL to download from instead of the default ({default_mirror})",
    )
    parser.add_argument(
        "--skip-checksum",
        action="store_true",
        help="do not check MD5 checksums (for mirrors serving other files, e.g. tests)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_download_arguments(parser, " then ".join(MIRRORS))


def verify(folder: str) -> dict[str, int]:
    """Parse every file with the workload's reader; returns the train/test image counts."""
    from algoperf_torch.workloads.mnist.data import read_idx

    def read(name: str) -> np.ndarray:
        path = os.path.join(folder, name)
        try:
            return read_idx(path)
        except (OSError, EOFError, ValueError) as e:  # bad gzip, truncated, wrong header
            raise SetupError(f"{path} is not a valid idx file ({e}); delete it and rerun") from None

    counts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read(f"{prefix}-images-idx3-ubyte.gz")
        labels = read(f"{prefix}-labels-idx1-ubyte.gz")
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise SetupError(
                f"MNIST {split}: images {images.shape}, labels {labels.shape}; "
                "expected [N, 28, 28] and [N]"
            )
        if len(images) != len(labels):
            raise SetupError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
        counts[split] = len(images)
    return counts


def run(args: argparse.Namespace) -> int:
    """Download, verify, and say where the data is; 0 on success, 1 with a message on failure."""
    data_dir = os.path.expanduser(args.data_dir)
    folder = os.path.join(data_dir, FOLDER)
    mirrors = [args.mirror] if args.mirror else list(MIRRORS)
    try:
        fetched = [
            name
            for name, md5 in FILES.items()
            if fetch(name, folder, mirrors, None if args.skip_checksum else md5)
        ]
        counts = verify(folder)
    except SetupError as e:
        print(f"MNIST setup failed:\n{e}", file=sys.stderr)
        return 1
    state = f"downloaded {len(fetched)} file(s)" if fetched else "already present, nothing to do"
    print(f"MNIST ({counts['train']} train, {counts['test']} test images): {state}.")
    print(f"  data: {folder}")
    print(f"  train: python -m algoperf_torch workload=mnist data=real data.data_dir={data_dir}")
    return 0
