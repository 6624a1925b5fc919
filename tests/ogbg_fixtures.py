"""A tiny ogbg-molpcba in OGB's raw ``pcba.zip`` layout, for the setup and pipeline tests."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np


def random_molecules(
    num_graphs: int, seed: int = 0, max_nodes: int = 12, bonds_per_node: int = 2
) -> list[dict]:
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(num_graphs):
        n = int(rng.integers(1, max_nodes + 1))
        e = int(rng.integers(0, bonds_per_node * n + 1)) if n > 1 else 0
        labels = rng.choice([0.0, 1.0, np.nan], size=128, p=[0.45, 0.15, 0.4])
        graphs.append(
            {
                "node_feat": rng.integers(0, [119, 5, 12, 12, 10, 6, 6, 2, 2], size=(n, 9)),
                "edge_index": rng.integers(0, n, size=(e, 2)),
                "edge_feat": rng.integers(0, [5, 6, 2], size=(e, 3)),
                "labels": labels,
            }
        )
    return graphs


def _csv_gz(rows: list[str]) -> bytes:
    return gzip.compress(("\n".join(rows) + ("\n" if rows else "")).encode())


def _ints(array: np.ndarray) -> list[str]:
    return (
        [",".join(str(int(v)) for v in row) for row in np.atleast_2d(array)] if len(array) else []
    )


def write_pcba_zip(path: str, graphs: list[dict], splits: dict[str, list[int]]) -> None:
    """Write ``graphs`` as OGB writes pcba.zip: ``pcba/raw/*.csv.gz`` (no headers, empty fields
    for missing labels) and ``pcba/split/scaffold/{train,valid,test}.csv.gz``."""
    cat = lambda key, width: (  # noqa: E731
        np.concatenate([g[key] for g in graphs]) if graphs else np.zeros((0, width))
    )
    labels = [",".join("" if np.isnan(v) else str(int(v)) for v in g["labels"]) for g in graphs]
    members = {
        "raw/num-node-list.csv.gz": _csv_gz([str(len(g["node_feat"])) for g in graphs]),
        "raw/num-edge-list.csv.gz": _csv_gz([str(len(g["edge_index"])) for g in graphs]),
        "raw/node-feat.csv.gz": _csv_gz(_ints(cat("node_feat", 9))),
        "raw/edge-feat.csv.gz": _csv_gz(_ints(cat("edge_feat", 3))),
        "raw/edge.csv.gz": _csv_gz(_ints(cat("edge_index", 2))),
        "raw/graph-label.csv.gz": _csv_gz(labels),
        "mapping/mol.csv.gz": _csv_gz(["smiles,mol_id"] + [f"C,{i}" for i in range(len(graphs))]),
    }
    for split, ids in splits.items():
        members[f"split/scaffold/{split}.csv.gz"] = _csv_gz([str(i) for i in ids])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, payload in members.items():
            z.writestr(f"pcba/{name}", payload)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def tiny_dataset(tmp_path, num_graphs: int = 40, seed: int = 0, **sizes):
    """(archives dir, graphs, splits): 28 train / 6 valid / 6 test graphs, shuffled ids."""
    graphs = random_molecules(num_graphs, seed, **sizes)
    ids = np.random.default_rng(seed + 1).permutation(num_graphs).tolist()
    n_train = num_graphs - 2 * (num_graphs * 3 // 20)
    n_eval = (num_graphs - n_train) // 2
    splits = {
        "train": ids[:n_train],
        "valid": ids[n_train : n_train + n_eval],
        "test": ids[n_train + n_eval :],
    }
    archives = tmp_path / "archives"
    archives.mkdir(exist_ok=True)
    write_pcba_zip(str(archives / "pcba.zip"), graphs, splits)
    return archives, graphs, splits
