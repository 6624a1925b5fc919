"""Prepare fastMRI knee single-coil from the official archives (no download: a signed form).

The NYU fastMRI archives need the data-sharing agreement at https://fastmri.med.nyu.edu/ (it
mails signed URLs; the reference's ``dataset_setup.py --fastmri_knee_singlecoil_*_url`` fetches
them with wget). Put ``knee_singlecoil_train.tar.xz`` and ``knee_singlecoil_val.tar.xz`` in
``--archives-dir`` (the test archive is not needed: its volumes have no target). This command
extracts them into the reference's folders [datasets/dataset_setup.py ``setup_fastmri``]::

    <data-dir>/fastmri/knee_singlecoil_train/file*.h5    973 volumes, 34,742 slices
    <data-dir>/fastmri/knee_singlecoil_val/file*.h5      199 volumes, 7,135 slices
    <data-dir>/fastmri/slice_index.json                  volumes, slices and widths per split

and writes the slice index the loader reads at start-up (it never scans volumes then).

Resumable and idempotent: each volume is extracted to ``.partial/`` beside its folder, opened
with h5py and checked (``kspace`` complex64 [slices, 640, W], ``reconstruction_esc`` float32
[slices, 320, 320], attribute ``max``), and only then renamed into place, so a volume in the
final folder is always complete. A re-run skips volumes already in place (xz cannot seek, so it
still decompresses past them) and skips an archive entirely once every volume it holds is in
place. Folders that were extracted by other means (the reference's script) are checked and
indexed as they are. At the end the volume and slice counts are checked against the official
ones; ``--allow-partial`` accepts other counts (a subset, a test) with a warning.

    python -m algoperf_torch.data fastmri --data-dir ~/data --archives-dir ~/Downloads
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile

import h5py
import numpy as np

from algoperf_torch.data.download import SetupError

SPLITS = {  # folder -> (archive, official volumes, official slices)
    "knee_singlecoil_train": ("knee_singlecoil_train.tar.xz", 973, 34_742),
    "knee_singlecoil_val": ("knee_singlecoil_val.tar.xz", 199, 7_135),
}
INDEX = "slice_index.json"
DONE = ".archive_done.json"  # beside the volumes: the archive (size, mtime) fully extracted
KSPACE_ROWS, TARGET = 640, (320, 320)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        default=None,
        help="folder holding knee_singlecoil_train.tar.xz and knee_singlecoil_val.tar.xz "
        "(default: <data-dir>/fastmri, where the reference's download puts them)",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept volume/slice counts that differ from the official ones (with a warning)",
    )


def check_volume(path: str) -> tuple[int, int]:
    """(slices, k-space width) of a single-coil volume; ``SetupError`` naming what is wrong."""
    try:
        with h5py.File(path, "r") as f:
            if "kspace" not in f or "reconstruction_esc" not in f:
                raise SetupError(
                    f"{path}: datasets {sorted(f)}; a knee single-coil volume has 'kspace' and "
                    "'reconstruction_esc'"
                )
            kspace, target = f["kspace"], f["reconstruction_esc"]
            if kspace.ndim != 3 or kspace.shape[1] != KSPACE_ROWS or kspace.dtype != np.complex64:
                raise SetupError(
                    f"{path}: kspace {kspace.dtype} {kspace.shape}; expected complex64 "
                    f"[slices, {KSPACE_ROWS}, W]"
                )
            want = (kspace.shape[0], *TARGET)
            if target.shape != want or target.dtype != np.float32:
                raise SetupError(
                    f"{path}: reconstruction_esc {target.dtype} {target.shape}; expected "
                    f"float32 {list(want)}"
                )
            if "max" not in f.attrs:
                raise SetupError(f"{path}: no 'max' attribute (the volume's maximum)")
            return int(kspace.shape[0]), int(kspace.shape[2])
    except (OSError, KeyError) as e:
        raise SetupError(f"{path}: not a readable HDF5 volume ({e})") from e


def _archive_id(archive: str) -> dict[str, int]:
    st = os.stat(archive)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def extract(archive: str, folder: str, log) -> None:
    """Extract every ``*.h5`` member of ``archive`` into ``folder`` that is not there yet."""
    done_path = os.path.join(folder, DONE)
    if os.path.isfile(done_path):
        with open(done_path) as f:
            done = json.load(f)
        present = sum(1 for n in os.listdir(folder) if n.endswith(".h5"))
        if done.get("archive") == _archive_id(archive) and present >= done.get("volumes", 0):
            log(f"{os.path.basename(folder)}: {os.path.basename(archive)} already extracted")
            return
    partial = os.path.join(os.path.dirname(folder), ".partial")
    os.makedirs(folder, exist_ok=True)
    os.makedirs(partial, exist_ok=True)
    new = skipped = 0
    with tarfile.open(archive, "r|*") as tar:  # a stream: xz cannot seek
        for member in tar:
            name = os.path.basename(member.name)
            if not (member.isfile() and name.endswith(".h5")):
                continue
            final = os.path.join(folder, name)
            if os.path.isfile(final):
                skipped += 1
                continue
            tmp = os.path.join(partial, name)
            with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
            check_volume(tmp)  # only a complete, well-formed volume enters the folder
            os.replace(tmp, final)
            new += 1
            if new % 50 == 0:
                log(f"  {os.path.basename(folder)}: {new} volumes extracted")
    _write_json(done_path, {"archive": _archive_id(archive), "volumes": new + skipped})
    shutil.rmtree(partial, ignore_errors=True)
    log(f"{os.path.basename(folder)}: {new} volumes extracted, {skipped} already in place")


def _write_json(path: str, value) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def index_folder(folder: str) -> list[list]:
    """``[[file name, slices, width], ...]`` of the folder's volumes, in sorted name order."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".h5"))
    return [[name, *check_volume(os.path.join(folder, name))] for name in names]


def run(args: argparse.Namespace) -> int:
    """Extract what is missing, index, verify counts; 0 when complete, 1 otherwise."""
    data_dir = os.path.expanduser(args.data_dir)
    root = os.path.join(data_dir, "fastmri")
    archives = os.path.expanduser(args.archives_dir or root)
    os.makedirs(root, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, flush=True)

    index, problems, warnings = {}, [], []
    try:
        for folder_name, (archive_name, want_volumes, want_slices) in SPLITS.items():
            folder, archive = os.path.join(root, folder_name), os.path.join(archives, archive_name)
            if os.path.isfile(archive):
                extract(archive, folder, log)
            elif not os.path.isdir(folder):
                problems.append(
                    f"{folder_name}: archive {archive} not found (request the fastMRI knee "
                    "single-coil data at https://fastmri.med.nyu.edu/, download it, re-run)"
                )
                continue
            volumes = index_folder(folder)
            index[folder_name] = volumes
            slices = sum(v[1] for v in volumes)
            if (len(volumes), slices) != (want_volumes, want_slices):
                msg = (
                    f"{folder_name}: {len(volumes)} volumes / {slices} slices, expected "
                    f"{want_volumes} / {want_slices}"
                )
                (warnings if args.allow_partial else problems).append(msg)
    except (SetupError, tarfile.TarError, EOFError, OSError) as e:
        print(f"fastMRI setup failed: {e}\nRe-run the same command to resume.", file=sys.stderr)
        return 1
    for msg in warnings:
        print(f"warning (--allow-partial): {msg}", file=sys.stderr)
    if problems:
        print("fastMRI is incomplete:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    _write_json(os.path.join(root, INDEX), index)
    print(
        f"fastMRI ready in {root}\n  train: python -m algoperf_torch workload=fastmri "
        f"data.data_dir={data_dir}"
    )
    return 0
