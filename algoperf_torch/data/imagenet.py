"""Prepare ImageNet (ILSVRC2012) and ImageNet-v2 from the official archives (no download).

The archives need a login (image-net.org) or come from a mirror, so this command only unpacks
what it finds in ``--archives-dir`` into the folder layout our loader reads
(``algoperf_torch/workloads/imagenet_resnet/data.py``)::

    <data-dir>/imagenet/train/<wnid>/*.JPEG      from ILSVRC2012_img_train.tar (a tar of class tars)
    <data-dir>/imagenet/val/<wnid>/*.JPEG        from ILSVRC2012_img_val.tar + the val labels
    <data-dir>/imagenet/imagenet_v2/<0..999>/*.jpeg   from imagenetv2-matched-frequency.tar.gz

Validation labels: the reference sorts the val images into class folders with
``valprep.sh`` (soumith/imagenetloader.torch) [datasets/dataset_setup.py
``setup_imagenet_pytorch``]; pass that script with ``--val-labels``, or Kaggle's
``LOC_val_solution.csv``, or a text file of ``<file name> <wnid>`` lines. By default the archives
folder is searched for ``valprep.sh``, ``LOC_val_solution.csv`` and ``val_labels.txt``.

Idempotent and resumable: each class, the val split and the test split are unpacked into
``<data-dir>/imagenet/.partial/`` and renamed into place in one step once complete, so an
interrupted run redoes at most the unit it was working on and a finished one does nothing. At the
end the image counts are checked (1,281,167 train in 1,000 classes, 50,000 val, 10,000 test;
``--expected-*`` override them) and anything missing is listed.

    python -m algoperf_torch.data imagenet --data-dir ~/data --archives-dir ~/Downloads
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import tarfile

from algoperf_torch.data.download import SetupError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
V2_TAR = "imagenetv2-matched-frequency.tar.gz"
LABEL_FILES = ("valprep.sh", "LOC_val_solution.csv", "val_labels.txt")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        default=None,
        help=f"folder holding {TRAIN_TAR}, {VAL_TAR}, {V2_TAR} (default: data-dir)",
    )
    parser.add_argument(
        "--val-labels",
        default=None,
        help="valprep.sh, LOC_val_solution.csv or '<file> <wnid>' lines",
    )
    parser.add_argument("--expected-train", type=int, default=1_281_167)
    parser.add_argument("--expected-classes", type=int, default=1000)
    parser.add_argument("--expected-val", type=int, default=50_000)
    parser.add_argument("--expected-test", type=int, default=10_000)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _count_images(folder: str) -> int:
    return sum(1 for e in os.scandir(folder) if e.is_file() and _is_image(e.name))


def _fresh(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _extract_images(tar: tarfile.TarFile, dest: str, folder_of=lambda name: "") -> int:
    """Write every image member of a streamed tar under ``dest/<folder_of(name)>/<basename>``."""
    n = 0
    for member in tar:
        name = os.path.basename(member.name)
        if not member.isfile() or not _is_image(name):
            continue
        folder = os.path.join(dest, folder_of(member.name))
        os.makedirs(folder, exist_ok=True)
        with tar.extractfile(member) as src, open(os.path.join(folder, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        n += 1
    return n


def setup_train(archive: str, root: str, log) -> None:
    """Unpack each ``<wnid>.tar`` inside the train archive that is not in place yet."""
    train, partial = os.path.join(root, "train"), os.path.join(root, ".partial")
    os.makedirs(train, exist_ok=True)
    done = skipped = 0
    with tarfile.open(archive, "r:") as outer:  # seekable: finished classes are skipped fast
        for member in outer:
            if not (member.isfile() and member.name.endswith(".tar")):
                continue
            wnid = os.path.basename(member.name)[: -len(".tar")]
            final = os.path.join(train, wnid)
            if os.path.isdir(final):
                skipped += 1
                continue
            tmp = _fresh(os.path.join(partial, f"train-{wnid}"))
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                _extract_images(inner, tmp)
            os.replace(tmp, final)  # the class appears complete or not at all
            done += 1
            if done % 50 == 0:
                log(f"  train: {done} classes unpacked")
    log(f"train: {done} classes unpacked, {skipped} already in place")


def read_val_labels(path: str) -> dict[str, str]:
    """Val file name -> wnid from valprep.sh, LOC_val_solution.csv or '<file> <wnid>' lines."""
    labels: dict[str, str] = {}
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            for row in csv.DictReader(f):  # ImageId,PredictionString ("n01751748 x y x y ...")
                labels[row["ImageId"] + ".JPEG"] = row["PredictionString"].split()[0]
        else:
            for line in f:
                m = re.match(r"\s*(?:mv\s+)?(\S+\.jpe?g)\s+(n\d{8})/?\s*$", line, re.IGNORECASE)
                if m:
                    labels[m.group(1)] = m.group(2)
    if not labels:
        raise SetupError(
            f"{path}: no '<file> <wnid>' entries found (expected valprep.sh, "
            "LOC_val_solution.csv or lines of '<file name> <wnid>')"
        )
    return labels


def setup_val(archive: str, labels_path: str, root: str, log) -> None:
    final = os.path.join(root, "val")
    if os.path.isdir(final):
        log("val: already in place")
        return
    labels = read_val_labels(labels_path)
    tmp = _fresh(os.path.join(root, ".partial", "val"))

    def folder_of(name: str) -> str:
        base = os.path.basename(name)
        if base not in labels:
            raise SetupError(f"{labels_path} has no label for val image {base}")
        return labels[base]

    with tarfile.open(archive, "r|") as tar:
        n = _extract_images(tar, tmp, folder_of)
    os.replace(tmp, final)
    log(f"val: {n} images sorted into {len(os.listdir(final))} class folders")


def setup_test(archive: str, root: str, log) -> None:
    """ImageNet-v2 matched-frequency: ``<top>/<class index>/<hash>.jpeg`` -> ``imagenet_v2/``."""
    final = os.path.join(root, "imagenet_v2")
    if os.path.isdir(final):
        log("test (ImageNet-v2): already in place")
        return
    tmp = _fresh(os.path.join(root, ".partial", "imagenet_v2"))

    def folder_of(name: str) -> str:
        parent = os.path.basename(os.path.dirname(name))
        if not parent.isdigit():
            raise SetupError(f"{archive}: {name} is not in a <class index>/ folder")
        return parent

    with tarfile.open(archive, "r|*") as tar:
        n = _extract_images(tar, tmp, folder_of)
    os.replace(tmp, final)
    log(f"test (ImageNet-v2): {n} images")


def verify(root: str, args: argparse.Namespace) -> list[str]:
    """Problems found (empty: complete). Counts every class folder of every split."""
    problems = []
    expected = {
        "train": args.expected_train,
        "val": args.expected_val,
        "imagenet_v2": args.expected_test,
    }
    for split, want in expected.items():
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            problems.append(f"{split}: folder {folder} missing")
            continue
        classes = [e.path for e in os.scandir(folder) if e.is_dir()]
        counts = {os.path.basename(c): _count_images(c) for c in classes}
        total = sum(counts.values())
        if len(counts) != args.expected_classes:
            problems.append(
                f"{split}: {len(counts)} class folders, expected {args.expected_classes}"
            )
        if total != want:
            problems.append(f"{split}: {total} images, expected {want}")
        empty = sorted(k for k, v in counts.items() if v == 0)
        if empty:
            problems.append(
                f"{split}: empty class folders {empty[:10]}{' ...' if len(empty) > 10 else ''}"
            )
    train, val = os.path.join(root, "train"), os.path.join(root, "val")
    if os.path.isdir(train) and os.path.isdir(val):
        missing = sorted(set(os.listdir(val)) - set(os.listdir(train)))
        if missing:
            problems.append(f"val classes without a train folder: {missing[:10]}")
    return problems


def _find_labels(args: argparse.Namespace, archives: str) -> str:
    if args.val_labels:
        if not os.path.isfile(args.val_labels):
            raise SetupError(f"--val-labels {args.val_labels}: no such file")
        return args.val_labels
    for name in LABEL_FILES:
        if os.path.isfile(os.path.join(archives, name)):
            return os.path.join(archives, name)
    raise SetupError(
        f"no validation labels found in {archives} (looked for {', '.join(LABEL_FILES)}). The "
        "reference uses valprep.sh from github.com/soumith/imagenetloader.torch; pass it with "
        "--val-labels PATH"
    )


def run(args: argparse.Namespace) -> int:
    """Unpack what is not in place yet, verify counts; 0 when complete, 1 otherwise."""
    data_dir = os.path.expanduser(args.data_dir)
    archives = os.path.expanduser(args.archives_dir or data_dir)
    root = os.path.join(data_dir, "imagenet")
    os.makedirs(root, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    steps = []
    try:
        for split, name, step in (
            ("train", TRAIN_TAR, lambda a: setup_train(a, root, log)),
            ("val", VAL_TAR, lambda a: setup_val(a, _find_labels(args, archives), root, log)),
            ("imagenet_v2", V2_TAR, lambda a: setup_test(a, root, log)),
        ):
            archive = os.path.join(archives, name)
            if os.path.isfile(archive):
                step(archive)
            elif not os.path.isdir(os.path.join(root, split)):
                steps.append(f"{split}: archive {archive} not found (download it, then re-run)")
    except (SetupError, tarfile.TarError, OSError) as e:
        print(f"ImageNet setup failed: {e}\nRe-run the same command to resume.", file=sys.stderr)
        return 1
    shutil.rmtree(os.path.join(root, ".partial"), ignore_errors=True)
    problems = steps + verify(root, args)
    if problems:
        print("ImageNet is incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(
        f"ImageNet ready in {root}\n  train: python -m algoperf_torch workload=imagenet_resnet "
        f"data.data_dir={data_dir}"
    )
    return 0
