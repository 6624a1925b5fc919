"""The mnist and cifar download commands, against a local HTTP server serving tiny real-format files.

python -m pytest tests/test_data_setup.py
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
from types import ModuleType

import numpy as np
import pytest

from algoperf_torch.data import cifar as cifar_setup
from algoperf_torch.data import mnist as mnist_setup
from algoperf_torch.workloads.cifar import data as cifar_data
from algoperf_torch.workloads.mnist import data as mnist_data

N_TRAIN, N_TEST = 12, 5  # MNIST images per set
CIFAR_PER_FILE, CIFAR_TEST = 4, 6


def idx_gz(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes (magic 0x08, ndim, big-endian dims), gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_mnist_files(folder: str) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = rng.integers(0, 10, n)
        with open(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(idx_gz(images))
        with open(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(idx_gz(labels))


def write_cifar_archive(path: str) -> None:
    """A cifar-10-python.tar.gz holding tiny batches in the real pickle format."""
    rng = np.random.default_rng(1)
    members = {}
    for name in (*cifar_data.TRAIN_FILES, cifar_data.TEST_FILE):
        n = CIFAR_TEST if name == cifar_data.TEST_FILE else CIFAR_PER_FILE
        entry = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"img.png"] * n,
        }
        members[name] = pickle.dumps(entry)
    members["batches.meta"] = pickle.dumps(
        {b"num_cases_per_batch": CIFAR_PER_FILE, b"label_names": [b"cat"] * 10, b"num_vis": 3072}
    )
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{cifar_data.FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


class Server:
    """``http.server`` on 127.0.0.1 (ephemeral port) in a thread, recording every request path.

    ``/short/<name>`` announces more bytes than it sends, as a dropped connection would.
    """

    def __init__(self, root: str) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root, **kwargs)

            def do_GET(self):
                outer.requests.append(self.path)
                if self.path.startswith("/short/"):
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(b"x" * 10)
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("mirror"))
    write_mnist_files(root)
    write_cifar_archive(os.path.join(root, cifar_setup.ARCHIVE))
    with Server(root) as s:
        yield s


def run_setup(module: ModuleType, data_dir: str, *options: str) -> int:
    """Parse and run as ``python -m algoperf_torch.data <dataset>`` would."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    module.add_arguments(parser)
    return module.run(parser.parse_args(["--data-dir", data_dir, *options]))


def leftovers(folder: str) -> list[str]:
    """Temporary download or extraction files left behind."""
    return [n for n in os.listdir(folder) if n.endswith(".part") or n.startswith(".cifar-extract")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- mnist --------------------------------------------------------------------------------------
def test_mnist_downloads_loads_and_is_idempotent(server, tmp_path, capsys):
    data_dir = str(tmp_path)
    server.requests.clear()
    assert run_setup(mnist_setup, data_dir, "--mirror", server.url, "--skip-checksum") == 0
    assert sorted(server.requests) == sorted(f"/{n}" for n in mnist_setup.FILES)
    out = capsys.readouterr().out
    assert os.path.join(data_dir, "mnist") in out and "workload=mnist" in out
    arrays = mnist_data.load(data_dir)
    assert arrays["train_images"].shape == (N_TRAIN, 1, 28, 28)
    assert arrays["test_labels"].shape == (N_TEST,)
    assert mnist_data.find_file(data_dir, "t10k-images-idx3-ubyte").startswith(
        os.path.join(data_dir, "mnist")
    )

    server.requests.clear()
    assert run_setup(mnist_setup, data_dir, "--mirror", server.url, "--skip-checksum") == 0
    assert server.requests == []
    assert "nothing to do" in capsys.readouterr().out
    assert leftovers(os.path.join(data_dir, "mnist")) == []


def test_mnist_checksum_mismatch_fails_clearly(server, tmp_path, capsys):
    assert run_setup(mnist_setup, str(tmp_path), "--mirror", server.url) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and server.url in err and "Traceback" not in err
    folder = tmp_path / "mnist"
    assert list(folder.iterdir()) == []  # nothing that looks finished, no temp files


def test_mnist_existing_bad_file_is_replaced(server, tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not an idx file")
    # With checksums on, a present file failing its MD5 is fetched again (and here fails again).
    assert run_setup(mnist_setup, str(tmp_path), "--mirror", server.url) == 1
    # With --skip-checksum a present file is trusted, but verification rejects it.
    assert run_setup(mnist_setup, str(tmp_path), "--mirror", server.url, "--skip-checksum") == 1
    assert "train-labels-idx1-ubyte.gz is not a valid idx file" in capsys.readouterr().err


def test_unreachable_mirror_fails_cleanly(tmp_path, capsys):
    mirror = f"http://127.0.0.1:{closed_port()}/"
    assert run_setup(mnist_setup, str(tmp_path), "--mirror", mirror, "--skip-checksum") == 1
    err = capsys.readouterr().err
    assert f"{mirror}train-images-idx3-ubyte.gz" in err and "Traceback" not in err
    assert leftovers(str(tmp_path / "mnist")) == []


def test_http_error_names_the_url(server, tmp_path, capsys):
    mirror = server.url + "nowhere/"
    assert run_setup(mnist_setup, str(tmp_path), "--mirror", mirror, "--skip-checksum") == 1
    err = capsys.readouterr().err
    assert f"{mirror}train-images-idx3-ubyte.gz" in err and "404" in err


def test_truncated_download_never_looks_finished(server, tmp_path, capsys):
    mirror = server.url + "short/"
    assert run_setup(mnist_setup, str(tmp_path), "--mirror", mirror, "--skip-checksum") == 1
    assert "got 10 of 100000 bytes" in capsys.readouterr().err
    assert list((tmp_path / "mnist").iterdir()) == []


# --- cifar --------------------------------------------------------------------------------------
def test_cifar_downloads_extracts_loads_and_is_idempotent(server, tmp_path, capsys):
    data_dir = str(tmp_path)
    server.requests.clear()
    assert run_setup(cifar_setup, data_dir, "--mirror", server.url, "--skip-checksum") == 0
    assert server.requests == [f"/{cifar_setup.ARCHIVE}"]
    out = capsys.readouterr().out
    assert os.path.join(data_dir, cifar_data.FOLDER) in out and "workload=cifar" in out
    arrays = cifar_data.load(data_dir)
    assert arrays["train_images"].shape == (5 * CIFAR_PER_FILE, 3, 32, 32)
    assert arrays["test_labels"].shape == (CIFAR_TEST,)
    assert leftovers(data_dir) == []

    server.requests.clear()
    os.remove(os.path.join(data_dir, cifar_setup.ARCHIVE))  # extracted data is what counts
    assert run_setup(cifar_setup, data_dir, "--mirror", server.url, "--skip-checksum") == 0
    assert server.requests == []
    assert "nothing to do" in capsys.readouterr().out
    cifar_data.load.cache_clear()


def test_cifar_reextracts_when_a_batch_is_missing(server, tmp_path):
    data_dir = str(tmp_path)
    assert run_setup(cifar_setup, data_dir, "--mirror", server.url, "--skip-checksum") == 0
    os.remove(os.path.join(data_dir, cifar_data.FOLDER, "data_batch_3"))
    server.requests.clear()
    assert run_setup(cifar_setup, data_dir, "--mirror", server.url, "--skip-checksum") == 0
    assert server.requests == []  # the archive was kept and is re-extracted
    assert os.path.exists(os.path.join(data_dir, cifar_data.FOLDER, "data_batch_3"))


def test_cifar_checksum_mismatch_fails_clearly(server, tmp_path, capsys):
    assert run_setup(cifar_setup, str(tmp_path), "--mirror", server.url) == 1
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and cifar_setup.ARCHIVE in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_cifar_unreachable_mirror_fails_cleanly(tmp_path, capsys):
    mirror = f"http://127.0.0.1:{closed_port()}/"
    assert run_setup(cifar_setup, str(tmp_path), "--mirror", mirror, "--skip-checksum") == 1
    err = capsys.readouterr().err
    assert f"{mirror}{cifar_setup.ARCHIVE}" in err and "Traceback" not in err


def test_cifar_corrupt_archive_is_a_clear_error(server, tmp_path, capsys):
    (tmp_path / cifar_setup.ARCHIVE).write_bytes(b"not gzip")
    assert run_setup(cifar_setup, str(tmp_path), "--mirror", server.url, "--skip-checksum") == 1
    err = capsys.readouterr().err
    assert "not a readable tar.gz" in err and "Traceback" not in err
    assert leftovers(str(tmp_path)) == []
