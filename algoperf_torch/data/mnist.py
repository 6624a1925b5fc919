"""Download MNIST (the four idx .gz files) into ``<data-dir>/mnist/`` and check that they load.

Files and MD5 checksums are the ones torchvision's ``MNIST`` dataset publishes; the mirrors are
tried in order. Downloads are atomic (a temporary file renamed into place only after its checksum
matched) and the command is idempotent: files already present and valid are not fetched again.

    python -m algoperf_torch.data mnist --data-dir ~/data
    python -m algoperf_torch.data mnist --data-dir ~/data --mirror http://host/mnist/ --skip-checksum
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from algoperf_torch.data.download import SetupError, add_download_arguments, fetch

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
