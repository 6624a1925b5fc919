"""Prepare ogbg-molpcba from OGB's ``pcba.zip`` into flat memory-mappable arrays.

Reads the raw CSVs straight from the zip (no TFDS): ``pcba/raw/{num-node-list, num-edge-list,
node-feat, edge-feat, edge, graph-label}.csv.gz`` (the per-graph concatenations, in OGB graph
order) and ``pcba/split/scaffold/{train,valid,test}.csv.gz`` (graph ids), as the TFDS builder the
reference uses does [datasets/dataset_setup.py ``download_ogbg``; WORKLOADS.md §8.7]. Writes into
``<data-dir>/ogbg_molpcba/``:

- ``num_nodes.npy``, ``num_edges.npy`` int32 [G] (edges = bonds, one direction, as in the CSV),
- ``node_feat.npy`` uint8 [sum nodes, 9], ``edge_feat.npy`` uint8 [sum bonds, 3] (OGB's integer
  atom/bond codes), ``edge_index.npy`` int16 [sum bonds, 2] (graph-local node ids),
- ``labels.npy`` int8 [G, 128] (1, 0, or -1 for a missing label),
- ``split_{train,valid,test}.npy`` int32 graph ids, and ``manifest.json`` (written last).

Every file is written to a temporary name and renamed into place, so an interrupted run leaves
only complete files; a re-run skips them and finishes the rest. The official counts (350,343 /
43,793 / 43,793 graphs) are checked; ``--allow-partial`` accepts others (tests, subsets).

    python -m algoperf_torch.data ogbg --data-dir ~/data [--archives-dir DIR] [--allow-partial]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

from algoperf_torch.data.download import SetupError, add_download_arguments, fetch

MIRROR = "http://snap.stanford.edu/ogb/data/graphproppred/csv_mol_download/"
ARCHIVE = "pcba.zip"
FOLDER = "ogbg_molpcba"
SPLITS = {"train": 350_343, "valid": 43_793, "test": 43_793}
NUM_TASKS = 128
FORMAT_VERSION = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        default=None,
        help=f"folder holding {ARCHIVE} (default: download it into data-dir)",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept split sizes other than the official 350,343 / 43,793 / 43,793 (warns)",
    )
    add_download_arguments(parser, MIRROR, checksums=False)  # OGB publishes no MD5


def _save(folder: str, name: str, array: np.ndarray) -> None:
    """``np.save`` to a temporary file in ``folder``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, os.path.join(folder, name))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _Zip:
    """The members of ``pcba.zip`` read as integer/float CSV tables, with errors naming them."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise SetupError(
                f"{path} is not a readable zip archive ({e}); download it again"
            ) from None
        self.names = {n.split("pcba/", 1)[-1]: n for n in self.zip.namelist()}

    def table(self, member: str, dtype: type, columns: int | None) -> np.ndarray:
        import pandas as pd

        if member not in self.names:
            raise SetupError(f"{self.path} has no pcba/{member}: not OGB's pcba.zip?")
        try:
            with self.zip.open(self.names[member]) as raw, gzip.open(raw) as f:
                frame = pd.read_csv(io.BufferedReader(f), header=None)
        except pd.errors.EmptyDataError:
            return np.zeros((0, columns or 1), dtype)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
            raise SetupError(f"{self.path}: pcba/{member} is truncated or corrupt ({e})") from None
        values = frame.to_numpy()
        if columns is not None and values.shape[1] != columns:
            raise SetupError(
                f"{self.path}: pcba/{member} has {values.shape[1]} columns, expected {columns}"
            )
        if np.issubdtype(dtype, np.integer) and not np.issubdtype(values.dtype, np.integer):
            raise SetupError(f"{self.path}: pcba/{member} holds non-integer values")
        return values


def _as(values: np.ndarray, dtype: type, member: str) -> np.ndarray:
    """Cast to a compact dtype, refusing values that do not fit."""
    if values.size and values.min() < 0:
        raise SetupError(f"pcba/{member}: negative value {values.min()}")
    if values.size and values.max() > np.iinfo(dtype).max:
        raise SetupError(f"pcba/{member}: value {values.max()} does not fit in {np.dtype(dtype)}")
    return values.astype(dtype)


def prepare(archive: str, folder: str, allow_partial: bool, log=print) -> dict[str, int]:
    """Write the arrays that are not there yet, check them, write the manifest; the counts."""
    os.makedirs(folder, exist_ok=True)
    z = _Zip(archive)

    def step(name: str, build) -> None:
        if os.path.exists(os.path.join(folder, name)):
            return
        log(f"  writing {name}")
        _save(folder, name, build())

    step(
        "num_nodes.npy",
        lambda: _as(
            z.table("raw/num-node-list.csv.gz", np.int64, 1)[:, 0],
            np.int32,
            "raw/num-node-list.csv.gz",
        ),
    )
    step(
        "num_edges.npy",
        lambda: _as(
            z.table("raw/num-edge-list.csv.gz", np.int64, 1)[:, 0],
            np.int32,
            "raw/num-edge-list.csv.gz",
        ),
    )
    step(
        "node_feat.npy",
        lambda: _as(z.table("raw/node-feat.csv.gz", np.int64, 9), np.uint8, "raw/node-feat.csv.gz"),
    )
    step(
        "edge_feat.npy",
        lambda: _as(z.table("raw/edge-feat.csv.gz", np.int64, 3), np.uint8, "raw/edge-feat.csv.gz"),
    )
    step(
        "edge_index.npy",
        lambda: _as(z.table("raw/edge.csv.gz", np.int64, 2), np.int16, "raw/edge.csv.gz"),
    )

    def labels() -> np.ndarray:
        values = z.table("raw/graph-label.csv.gz", np.float64, NUM_TASKS).astype(np.float64)
        bad = ~np.isnan(values) & (values != 0) & (values != 1)
        if bad.any():
            raise SetupError(
                f"pcba/raw/graph-label.csv.gz: label {values[bad][0]} is not 0, 1 or empty"
            )
        return np.where(np.isnan(values), -1, values).astype(np.int8)

    step("labels.npy", labels)
    for split in SPLITS:
        member = f"split/scaffold/{split}.csv.gz"
        step(f"split_{split}.npy", lambda m=member: _as(z.table(m, np.int64, 1)[:, 0], np.int32, m))
    counts = verify(folder, allow_partial, log)
    manifest = {"format_version": FORMAT_VERSION, "source": os.path.basename(archive), **counts}
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".part", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(folder, "manifest.json"))
    return counts


def verify(folder: str, allow_partial: bool, log=print) -> dict[str, int]:
    """Check the arrays against each other and the official split sizes; the counts."""
    load = lambda name: np.load(os.path.join(folder, name), mmap_mode="r")  # noqa: E731
    num_nodes, num_edges = load("num_nodes.npy"), load("num_edges.npy")
    graphs = len(num_nodes)
    problems = []
    if len(num_edges) != graphs:
        problems.append(f"num-edge-list has {len(num_edges)} graphs, num-node-list {graphs}")
    for name, rows in (
        ("node_feat.npy", num_nodes.sum()),
        ("edge_feat.npy", num_edges.sum()),
        ("edge_index.npy", num_edges.sum()),
    ):
        if len(load(name)) != rows:
            problems.append(f"{name}: {len(load(name))} rows, the per-graph counts sum to {rows}")
    if len(load("labels.npy")) != graphs:
        problems.append(f"labels.npy: {len(load('labels.npy'))} rows for {graphs} graphs")
    if not problems and len(num_edges):
        graph_of_edge = np.repeat(np.arange(graphs), num_edges)
        if (np.asarray(load("edge_index.npy")).max(1) >= num_nodes[graph_of_edge]).any():
            problems.append("edge.csv.gz names a node outside its graph")
    counts = {"graphs": graphs}
    seen = np.zeros(graphs, dtype=bool)
    for split, official in SPLITS.items():
        ids = np.asarray(load(f"split_{split}.npy"))
        counts[split] = len(ids)
        if len(ids) and (ids.min() < 0 or ids.max() >= graphs):
            problems.append(f"split {split}: graph id out of range 0..{graphs - 1}")
            continue
        if seen[ids].any():
            problems.append(f"split {split}: graph ids overlap another split")
        seen[ids] = True
        if len(ids) != official:
            message = f"split {split}: {len(ids)} graphs, the official count is {official}"
            if not allow_partial:
                problems.append(message + " (pass --allow-partial to accept)")
            else:
                log(f"  warning: {message}")
    if problems:
        raise SetupError(f"{folder} is inconsistent:\n  " + "\n  ".join(problems))
    return counts


def run(args: argparse.Namespace) -> int:
    data_dir = os.path.expanduser(args.data_dir)
    folder = os.path.join(data_dir, FOLDER)
    try:
        if args.archives_dir:
            archive = os.path.join(os.path.expanduser(args.archives_dir), ARCHIVE)
            if not os.path.isfile(archive):
                raise SetupError(f"{archive} not found (OGB's pcba.zip from {MIRROR})")
        else:
            archive = os.path.join(data_dir, ARCHIVE)
            fetch(ARCHIVE, data_dir, [args.mirror or MIRROR], None)
        counts = prepare(archive, folder, args.allow_partial)
    except SetupError as e:
        print(f"ogbg setup failed:\n{e}\nRe-run the same command to resume.", file=sys.stderr)
        return 1
    print(
        f"ogbg-molpcba ready in {folder}: {counts['train']} train, {counts['valid']} validation, "
        f"{counts['test']} test graphs\n  train: python -m algoperf_torch workload=ogbg "
        f"data.data_dir={data_dir}"
    )
    return 0
