"""Download helpers the dataset commands share: atomic, checksummed, mirror by mirror.

A download goes to a temporary file beside its destination and is renamed into place only once
complete (its size matches Content-Length) and, unless told otherwise, its MD5 matches; so a
partial download never looks finished, and a command re-run after an interruption fetches only
what is missing or wrong.

    python -m algoperf_torch.data mnist --data-dir ~/data
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request

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


def add_download_arguments(
    parser: argparse.ArgumentParser, default_mirror: str, checksums: bool = True
) -> None:
    """The ``--mirror`` option every download command shares, and ``--skip-checksum`` for those
    whose files have published checksums (``checksums=False``: none known, no such option)."""
    parser.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help=f"base URL to download from instead of the default ({default_mirror})",
    )
    if not checksums:
        return
    parser.add_argument(
        "--skip-checksum",
        action="store_true",
        help="do not check MD5 checksums (for mirrors serving other files, e.g. tests)",
    )
