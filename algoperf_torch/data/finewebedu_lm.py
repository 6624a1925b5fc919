"""Prepare FineWeb-Edu ``sample-10BT`` for finewebedu_lm: GPT-2 tokens in two flat uint16 files.

Reads the parquet files of ``HuggingFaceFW/fineweb-edu`` (config ``sample-10BT``, files
``sample/10BT/*.parquet``, column ``text``) from ``--archives-dir`` or, without it, downloads them
with ``huggingface_hub`` into ``<data-dir>/finewebedu_lm/raw/`` where the machine can. Writes
``<data-dir>/finewebedu_lm/{train,val}.bin`` (uint16 token streams, memory-mapped by the loader)
and ``meta.json`` (counts, tokenizer, split rule), in three steps:

1. **Tokenise** every row group of every file (sorted by path) with the GPT-2 BPE (Hugging Face
   ``tokenizers``; ``--tokenizer gpt2`` by default, or a ``tokenizer.json``), appending the EOS
   token ``<|endoftext|>`` to each non-empty document, as the upstream setup script did
   [dataset/dataset_setup.py @e805fa79]. One work file per row group, written atomically, in
   ``--workers`` processes: an interrupted run re-tokenises only the unfinished row groups.
2. **Split** (the upstream procedure for the final workload is unknown, WORKLOADS.md §13.4; this
   one is ours and deterministic): the documents are permuted with
   ``numpy.random.default_rng(--seed).permutation(num_documents)`` (what ``datasets``'
   ``Dataset.shuffle(seed)`` draws); ``train`` takes documents in that order until its stream
   holds ``--train-windows`` (8,749,870) windows of 1,025 tokens and is cut there (the tail of
   the last document is dropped); every later document goes to ``val``, which must then hold at
   least ``--min-val-windows`` (100,096 = 391 eval batches of 256) windows. On the ~10 B tokens
   of sample-10BT that leaves about 1 B tokens for ``val``, close to the earlier upstream 90/10
   split.
3. **Write** both streams in that document order to temporary files, renamed into place; the
   ``meta.json`` that the loader requires is written last, so a half-finished setup is never
   taken as complete. A re-run with the same inputs and options finds it and does nothing.

``--allow-partial`` accepts inputs too small for the official counts (a subset, a test): train
then gets the first 90% of the shuffled documents and val the rest, with a warning.

    python -m algoperf_torch.data finewebedu_lm --data-dir ~/data
    python -m algoperf_torch.data finewebedu_lm --data-dir ~/data --archives-dir ~/fineweb-edu
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from algoperf_torch.data.download import SetupError

FOLDER = "finewebedu_lm"
HF_REPO = "HuggingFaceFW/fineweb-edu"
HF_PATTERN = "sample/10BT/*.parquet"
EOS = "<|endoftext|>"
WINDOW = 1025  # seq_len + 1 [input_pipeline.py SEQUENCE_LENGTH]
TRAIN_WINDOWS = 8_749_870  # [finewebedu_lm/workload.py num_train_examples]
MIN_VAL_WINDOWS = 100_096  # ceil(100,000 / 256) x 256: what validation evaluates
PARTIAL_TRAIN_FRACTION = 0.9
FORMAT = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        help="folder holding the sample-10BT parquet files (searched recursively); default: "
        f"download {HF_REPO} {HF_PATTERN} into <data-dir>/{FOLDER}/raw/",
    )
    parser.add_argument(
        "--tokenizer",
        default="gpt2",
        help="a tokenizer.json file, or a Hugging Face model name (default gpt2: the GPT-2 BPE)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--seed", type=int, default=0, help="document shuffle seed (default 0)")
    parser.add_argument("--train-windows", type=int, default=TRAIN_WINDOWS)
    parser.add_argument("--min-val-windows", type=int, default=MIN_VAL_WINDOWS)
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="accept inputs smaller than the official counts (90/10 document split), warning",
    )


# --- tokenizer -----------------------------------------------------------------------------


def load_tokenizer(spec: str):
    """A ``tokenizers.Tokenizer`` from a tokenizer.json or a hub name (cache, then download)."""
    from tokenizers import Tokenizer

    if os.path.isfile(spec):
        try:
            return Tokenizer.from_file(spec)
        except Exception as e:  # noqa: BLE001 - the library raises bare Exceptions
            raise SetupError(f"{spec} is not a tokenizers JSON file ({e})") from None
    try:
        return Tokenizer.from_pretrained(spec)
    except Exception as e:  # noqa: BLE001
        raise SetupError(
            f"could not load the tokenizer {spec!r} ({e}); without internet, pass "
            "--tokenizer path/to/tokenizer.json (e.g. the gpt2 model's tokenizer.json)"
        ) from None


def tokenizer_facts(spec: str) -> dict[str, Any]:
    """Name, vocabulary size, EOS id and a hash of the tokenizer (work files depend on it)."""
    tok = load_tokenizer(spec)
    eos = tok.token_to_id(EOS)
    if eos is None:
        raise SetupError(f"the tokenizer {spec!r} has no {EOS} token")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    if vocab > 65536:
        raise SetupError(f"the tokenizer {spec!r} has {vocab} tokens; uint16 files hold 65,536")
    digest = hashlib.sha256(tok.to_str().encode()).hexdigest()
    return {"tokenizer": spec, "tokenizer_sha256": digest, "vocab_size": vocab, "eos_id": eos}


# --- step 1: tokenise row groups -------------------------------------------------------------


def find_parquet(folder: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True))
    if not files:
        raise SetupError(f"no *.parquet files under {folder}")
    return files


def download(raw: str) -> list[str]:
    """Fetch the sample-10BT parquet files with huggingface_hub (resumes partial downloads)."""
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(HF_REPO, repo_type="dataset", allow_patterns=HF_PATTERN, local_dir=raw)
    except Exception as e:  # noqa: BLE001 - network, auth or hub errors: one message
        raise SetupError(
            f"could not download {HF_REPO} {HF_PATTERN} into {raw} ({type(e).__name__}: {e}); "
            "download the parquet files elsewhere and pass --archives-dir"
        ) from None
    return find_parquet(raw)


def row_groups(files: list[str]) -> list[tuple[str, int]]:
    import pyarrow.parquet as pq

    units = []
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for bad files
            raise SetupError(f"{path} is not a readable parquet file ({e})") from None
        units += [(path, i) for i in range(meta.num_row_groups)]
    return units


def unit_name(index: int, path: str, group: int) -> str:
    return f"{index:05d}_{os.path.basename(path).removesuffix('.parquet')}_rg{group:04d}"


def _save_npy(path: str, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path), dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def tokenise_unit(job: tuple[int, str, int, str, str, int]) -> str:
    """One row group -> ``<work>/<name>.tokens.npy`` (uint16) and ``<name>.lengths.npy`` (each
    document's token count with its EOS; 0 for an empty one), the lengths file last: it marks
    the unit finished."""
    index, path, group, work, tokenizer, eos = job
    import pyarrow.parquet as pq

    name = unit_name(index, path, group)
    try:
        table = pq.ParquetFile(path).read_row_group(group, columns=["text"])
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types
        raise SetupError(f"{path} row group {group}: no readable 'text' column ({e})") from None
    texts = [t or "" for t in table.column("text").to_pylist()]
    encoded = load_tokenizer(tokenizer).encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.array([len(e.ids) + 1 if t else 0 for e, t in zip(encoded, texts)], np.int64)
    tokens = np.empty(int(lengths.sum()), np.uint16)
    at = 0
    for e, t in zip(encoded, texts):
        if t:
            tokens[at : at + len(e.ids)] = e.ids
            tokens[at + len(e.ids)] = eos
            at += len(e.ids) + 1
    _save_npy(os.path.join(work, name + ".tokens.npy"), tokens)
    _save_npy(os.path.join(work, name + ".lengths.npy"), lengths)
    return name


def tokenise_all(units, work: str, facts: dict[str, Any], workers: int) -> list[str]:
    """Tokenise the row groups without a finished work file; returns every unit's name."""
    names = [unit_name(i, p, g) for i, (p, g) in enumerate(units)]
    todo = [
        (i, p, g, work, facts["tokenizer"], facts["eos_id"])
        for i, (p, g) in enumerate(units)
        if not os.path.exists(os.path.join(work, names[i] + ".lengths.npy"))
    ]
    print(f"  tokenising {len(todo)} of {len(units)} row groups ({workers} workers)", flush=True)
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            tokenise_unit(job)
    else:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per process
        with ProcessPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(tokenise_unit, todo), 1):
                if done % 10 == 0:
                    print(f"    {done}/{len(todo)} row groups", flush=True)
    return names


def prepare_work(work: str, facts: dict[str, Any]) -> None:
    """Work files belong to one tokenizer: another one's are cleared (with a message)."""
    os.makedirs(work, exist_ok=True)
    stamp = os.path.join(work, "tokenizer.sha256")
    if os.path.exists(stamp) and open(stamp).read().strip() != facts["tokenizer_sha256"]:
        print(f"  {work} was tokenised with another tokenizer: clearing it", flush=True)
        shutil.rmtree(work)
        os.makedirs(work)
    if not os.path.exists(stamp):
        with open(stamp, "w") as f:
            f.write(facts["tokenizer_sha256"])


# --- step 2 and 3: split and write --------------------------------------------------------------


def split_documents(lengths: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """The document permutation and how many of its documents/tokens go to train."""
    order = np.random.default_rng(args.seed).permutation(len(lengths))
    cum = np.cumsum(lengths[order])
    total = int(cum[-1]) if len(cum) else 0
    need = args.train_windows * WINDOW
    enough = total >= need + args.min_val_windows * WINDOW
    if enough:
        n_train_docs = int(np.searchsorted(cum, need, side="left")) + 1
        train_tokens = need
    elif args.allow_partial:
        n_train_docs = int(round(PARTIAL_TRAIN_FRACTION * len(order)))
        train_tokens = int(cum[n_train_docs - 1]) if n_train_docs else 0
        print(
            f"warning: {total:,} tokens are fewer than the official {args.train_windows:,} train "
            f"+ {args.min_val_windows:,} validation windows of {WINDOW}; --allow-partial: "
            f"{PARTIAL_TRAIN_FRACTION:.0%} of the documents go to train",
            file=sys.stderr,
        )
    else:
        raise SetupError(
            f"the parquet files hold {total:,} tokens in {len(order):,} documents; the official "
            f"split needs {need + args.min_val_windows * WINDOW:,} ({args.train_windows:,} train "
            f"and >= {args.min_val_windows:,} validation windows of {WINDOW}). Are files "
            "missing? (--allow-partial prepares a subset)"
        )
    train_tokens = train_tokens // WINDOW * WINDOW
    val_tokens = total - int(cum[n_train_docs - 1] if n_train_docs else 0)
    if train_tokens < WINDOW or val_tokens < WINDOW:
        raise SetupError(
            f"{total:,} tokens in {len(order):,} documents: too few for one train and one "
            f"validation window of {WINDOW} tokens"
        )
    if enough and val_tokens // WINDOW < args.min_val_windows and not args.allow_partial:
        raise SetupError(
            f"validation holds {val_tokens // WINDOW:,} windows, fewer than "
            f"{args.min_val_windows:,}; are parquet files missing?"
        )
    return {
        "order": order,
        "train_docs": n_train_docs,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
    }


def write_streams(folder: str, work: str, names: list[str], plan: dict[str, Any]) -> None:
    """train.bin and val.bin in the permuted document order (temporary files, then renamed)."""
    lengths = [np.load(os.path.join(work, n + ".lengths.npy")) for n in names]
    tokens = [np.load(os.path.join(work, n + ".tokens.npy"), mmap_mode="r") for n in names]
    starts = [np.concatenate([[0], np.cumsum(x)[:-1]]) for x in lengths]
    unit_of = np.concatenate([np.full(len(x), i) for i, x in enumerate(lengths)])
    row_of = np.concatenate([np.arange(len(x)) for x in lengths])
    order = plan["order"]
    pieces = {
        "train": (order[: plan["train_docs"]], plan["train_tokens"]),
        "val": (order[plan["train_docs"] :], plan["val_tokens"]),
    }
    for split, (docs, limit) in pieces.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{split}.", suffix=".bin.part", dir=folder)
        written = 0
        with os.fdopen(fd, "wb", buffering=1 << 22) as out:
            for d in docs:
                u, r = unit_of[d], row_of[d]
                n = min(int(lengths[u][r]), limit - written)
                if n <= 0:
                    if written >= limit:
                        break
                    continue
                out.write(tokens[u][starts[u][r] : starts[u][r] + n].tobytes())
                written += n
        if written != limit:
            os.remove(tmp)
            raise SetupError(f"{split}: wrote {written} tokens, planned {limit} (internal error)")
        os.replace(tmp, os.path.join(folder, f"{split}.bin"))


def write_json(path: str, obj: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".meta.", suffix=".json", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _settings(args: argparse.Namespace, facts: dict[str, Any], files: list[str]) -> dict:
    """What decides the prepared files: a meta.json with the same settings is up to date."""
    return {
        "format": FORMAT,
        **facts,
        "seed": args.seed,
        "window": WINDOW,
        "train_windows_requested": args.train_windows,
        "min_val_windows": args.min_val_windows,
        "sources": [(os.path.basename(p), os.path.getsize(p)) for p in files],
    }


def is_prepared(folder: str, settings: dict[str, Any]) -> bool:
    path = os.path.join(folder, "meta.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        meta = json.load(f)
    same = {k: meta.get(k) for k in settings} == json.loads(json.dumps(settings))
    sizes_ok = all(
        os.path.isfile(os.path.join(folder, f"{s}.bin"))
        and os.path.getsize(os.path.join(folder, f"{s}.bin")) == 2 * v["tokens"]
        for s, v in meta.get("splits", {}).items()
    )
    return same and sizes_ok


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-3; returns the meta data written (or found up to date)."""
    data_dir = os.path.expanduser(args.data_dir)
    folder = os.path.join(data_dir, FOLDER)
    os.makedirs(folder, exist_ok=True)
    if args.archives_dir:
        files = find_parquet(os.path.expanduser(args.archives_dir))
    else:
        raw = os.path.join(folder, "raw")
        have = glob.glob(os.path.join(raw, "**", "*.parquet"), recursive=True)
        files = find_parquet(raw) if have else download(raw)
    facts = tokenizer_facts(args.tokenizer)
    settings = _settings(args, facts, files)
    if is_prepared(folder, settings):
        print("  already prepared with these inputs and settings: nothing to do")
        with open(os.path.join(folder, "meta.json")) as f:
            return json.load(f)
    work = os.path.join(folder, "work")
    prepare_work(work, facts)
    names = tokenise_all(row_groups(files), work, facts, max(1, args.workers))
    lengths = np.concatenate([np.load(os.path.join(work, n + ".lengths.npy")) for n in names])
    plan = split_documents(lengths, args)
    write_streams(folder, work, names, plan)
    meta = {
        **settings,
        "num_documents": int(len(lengths)),
        "split_rule": "numpy default_rng(seed).permutation of documents; train = leading "
        "documents up to train_windows x window tokens (cut there), val = the rest",
        "splits": {
            "train": {
                "tokens": plan["train_tokens"],
                "windows": plan["train_tokens"] // WINDOW,
                "documents": plan["train_docs"],
            },
            "val": {
                "tokens": plan["val_tokens"],
                "windows": plan["val_tokens"] // WINDOW,
                "documents": int(len(lengths) - plan["train_docs"]),
            },
        },
    }
    write_json(os.path.join(folder, "meta.json"), meta)
    shutil.rmtree(work, ignore_errors=True)
    return meta


def run(args: argparse.Namespace) -> int:
    try:
        meta = prepare(args)
    except SetupError as e:
        print(f"finewebedu_lm setup failed:\n{e}", file=sys.stderr)
        return 1
    folder = os.path.join(os.path.expanduser(args.data_dir), FOLDER)
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    print(
        f"finewebedu_lm: {meta['num_documents']:,} documents; train {train['windows']:,} windows "
        f"({train['tokens']:,} tokens), val {val['windows']:,} windows ({val['tokens']:,} tokens)"
    )
    print(f"  data: {folder}")
    print(f"  train: python -m algoperf_torch workload=finewebedu_lm data.data_dir={args.data_dir}")
    return 0
