"""Download CIFAR-10 (python version) and extract it to ``<data-dir>/cifar-10-batches-py/``.

The layout is torchvision's ``CIFAR10(root=data_dir)``, which the reference reads
[algoperf/workloads/cifar/cifar_pytorch/workload.py]; the archive and per-file MD5 checksums are
the ones torchvision publishes [torchvision/datasets/cifar.py]. The archive download is atomic
(temp file, renamed once its checksum matched) and so is the extraction (into a temporary folder,
renamed into place once complete). Idempotent: if every batch file is present and valid nothing is
downloaded.

    python -m algoperf_torch.data cifar --data-dir ~/data
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import zlib

from algoperf_torch.data.download import SetupError, add_download_arguments, fetch, is_valid

MIRROR = "https://www.cs.toronto.edu/~kriz/"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
# extracted file -> MD5 [torchvision/datasets/cifar.py ``CIFAR10.train_list/test_list/meta``].
FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_download_arguments(parser, MIRROR)


def is_extracted(folder: str, check_md5: bool) -> bool:
    return all(
        is_valid(os.path.join(folder, n), md5 if check_md5 else None) for n, md5 in FILES.items()
    )


def extract(archive: str, data_dir: str) -> None:
    """Unpack ``archive``'s ``cifar-10-batches-py/`` next to it, replacing an invalid old copy."""
    tmp = tempfile.mkdtemp(prefix=".cifar-extract-", dir=data_dir)
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")  # "data": no absolute paths, links out, devices
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise SetupError(
                f"{archive} is not a readable tar.gz ({e}); delete it and rerun"
            ) from None
        extracted = os.path.join(tmp, FOLDER)
        if not os.path.isdir(extracted):
            raise SetupError(f"{archive} holds no {FOLDER}/ folder; is it CIFAR-10 (python)?")
        target = os.path.join(data_dir, FOLDER)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(extracted, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify(folder: str, check_md5: bool) -> dict[str, int]:
    """Unpickle every batch with the workload's reader; returns the train/test image counts."""
    from algoperf_torch.workloads.cifar.data import TEST_FILE, TRAIN_FILES, read_batch

    missing = [
        n
        for n, md5 in FILES.items()
        if not is_valid(os.path.join(folder, n), md5 if check_md5 else None)
    ]
    if missing:
        raise SetupError(
            f"after extraction, {', '.join(missing)} missing or failing the checksum in {folder}"
        )
    counts = {}
    for split, names in (("train", TRAIN_FILES), ("test", (TEST_FILE,))):
        try:
            counts[split] = sum(len(read_batch(os.path.join(folder, n))[1]) for n in names)
        except Exception as e:  # an unpicklable or malformed batch: say which, not a traceback
            raise SetupError(f"CIFAR-10 batch unreadable in {folder}: {e}") from None
    return counts


def run(args: argparse.Namespace) -> int:
    """Download, extract, verify, and say where the data is; 0 on success, 1 on failure."""
    data_dir = os.path.expanduser(args.data_dir)
    folder = os.path.join(data_dir, FOLDER)
    check_md5 = not args.skip_checksum
    try:
        done = is_extracted(folder, check_md5)
        if not done:
            mirror = args.mirror or MIRROR
            fetch(ARCHIVE, data_dir, [mirror], ARCHIVE_MD5 if check_md5 else None)
            extract(os.path.join(data_dir, ARCHIVE), data_dir)
        counts = verify(folder, check_md5)
    except SetupError as e:
        print(f"CIFAR-10 setup failed:\n{e}", file=sys.stderr)
        return 1
    state = "already present, nothing to do" if done else "downloaded and extracted"
    print(f"CIFAR-10 ({counts['train']} train, {counts['test']} test images): {state}.")
    print(f"  data: {folder}")
    print(f"  train: python -m algoperf_torch workload=cifar data=real data.data_dir={data_dir}")
    return 0
