"""Prepare Criteo 1TB from the official ``day_0.gz`` ... ``day_23.gz`` (or decompressed ``day_N``).

The Criteo 1TB Click Logs come as 24 gzipped TSV day files (label, 13 integers, 26 categorical
hex strings per line). The reference splits each day into 5,000,000-line text files
``day_{d}_{NN}`` and parses, hashes and log-transforms them on every read
[datasets/dataset_setup.py ``download_criteo1tb``; algoperf/workloads/criteo1tb/input_pipeline.py].
This command does that parsing once and writes one memory-mappable file per such chunk, with
the same names, so the reference's file-level shuffle and its day-23 test/validation split carry
over unchanged:

    <data-dir>/criteo1tb/day_{d}_{NN}.npy   float32 [rows, 40]: label, 13 transformed dense
                                            values, 26 float32 bucket ids (as the reference's
                                            ``inputs`` row, ids not yet reduced modulo the vocab)
    <data-dir>/criteo1tb/day_{d}.json       a finished day: its source, line count, chunk rows
    <data-dir>/criteo1tb/index.json         written last: every chunk and its rows (complete)

Days are prepared in parallel processes (``--workers``); each chunk is written to a temporary
name in the same folder and renamed when complete, so an interrupted run keeps its finished
chunks and days and a re-run does only the rest. The official line counts (4,195,197,692 in
days 0-22, 178,274,637 in day 23) are verified; ``--allow-partial`` accepts other counts (a
subset, a test) with a warning.

A day file missing from the archives folder (default ``<data-dir>/criteo1tb/raw``) is downloaded
into it first, ``day_{d}.gz`` one at a time, each atomically (a temporary file renamed when
complete), so an interrupted download is resumed day by day: finished days are kept, a partial
one never counts. About 342 GB compressed in all (the reference's figure). ``--no-download``
uses only what is there; ``--mirror`` downloads from another base URL.

    python -m algoperf_torch.data criteo1tb --data-dir ~/data [--archives-dir ~/criteo_raw]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import multiprocessing
import os
import sys
import time
import zlib
from collections.abc import Iterator

import numpy as np

from algoperf_torch.data.download import SetupError, add_download_arguments, fetch
from algoperf_torch.workloads.criteo1tb.data import INDEX_FILE, chunk_name
from algoperf_torch.workloads.criteo1tb.hashing import ROW_WIDTH, ParseError, parse_lines

NUM_DAYS = 24
LINES_PER_CHUNK = 5_000_000  # `split -l 5000000` [datasets/dataset_setup.py]
TRAIN_LINES = 4_195_197_692  # days 0-22 [WORKLOADS.md §2.7]
DAY_23_LINES = 178_274_637
BLOCK_LINES = 200_000  # lines parsed at a time (bounds a worker's memory)
FOLDER = "criteo1tb"
# Where ``day_{d}.gz`` is downloaded from, tried in order. The reference's download_criteo1tb
# fetches one ~342 GB ``all_days.zip`` through a WeTransfer link [datasets/dataset_setup.py
# ``download_criteo1tb``], which cannot be fetched day by day or resumed; an earlier version of
# the same script fetched ``https://storage.googleapis.com/criteo-cail-datasets/day_{day}.gz``
# [mlcommons/algorithmic-efficiency datasets/dataset_setup.py ``download_criteo``], the per-day
# files of Criteo AI Lab's public bucket (also used by MLPerf's DLRM scripts). Criteo's Hugging
# Face copy of the same files is the fallback. No checksums are published.
MIRRORS = (
    "https://storage.googleapis.com/criteo-cail-datasets",
    "https://huggingface.co/datasets/criteo/CriteoClickLogs/resolve/main",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archives-dir",
        default=None,
        help="folder holding day_0.gz ... day_23.gz (or the decompressed day_0 ... day_23); "
        "missing days are downloaded into it, about 342 GB compressed in all "
        "(default: <data-dir>/criteo1tb/raw)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="use only the day files already in --archives-dir; never download",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="prepare the days present even if line counts differ from the official ones",
    )
    parser.add_argument(
        "--workers", type=int, default=min(8, os.cpu_count() or 1), help="parallel day processes"
    )
    parser.add_argument(
        "--lines-per-chunk",
        type=int,
        default=LINES_PER_CHUNK,
        help=argparse.SUPPRESS,  # the reference's 5,000,000; smaller only for tests
    )
    add_download_arguments(parser, " then ".join(MIRRORS), checksums=False)


def download_missing(archives: str, days: list[int], mirrors: list[str]) -> list[str]:
    """Fetch ``day_{d}.gz`` for each of ``days`` into ``archives``, one at a time; the errors."""
    os.makedirs(archives, exist_ok=True)
    errors = []
    for day in days:
        print(f"day_{day}.gz: not in {archives}, downloading", flush=True)
        try:
            fetch(f"day_{day}.gz", archives, mirrors, None)
        except SetupError as e:
            errors.append(str(e))  # one line per mirror tried, naming its URL
    return errors


def find_sources(archives: str) -> dict[int, str]:
    """Day -> raw file (``day_N.gz`` preferred, else ``day_N`` or ``day_N.csv``)."""
    found = {}
    for day in range(NUM_DAYS):
        for name in (f"day_{day}.gz", f"day_{day}", f"day_{day}.csv"):
            path = os.path.join(archives, name)
            if os.path.isfile(path):
                found[day] = path
                break
    return found


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb", buffering=1 << 22)


def _npy_header(rows: int) -> bytes:
    import io

    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, ROW_WIDTH)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def chunk_rows(path: str) -> int | None:
    """Rows of a prepared chunk file, or ``None`` if it is not a complete one."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[1] != ROW_WIDTH:
        return None
    return int(arr.shape[0])


def write_chunk(blocks: Iterator[tuple[bytes, int]], path: str, max_rows: int) -> int:
    """Parse ``blocks`` (raw lines, first line number) into ``path`` atomically; rows written.

    The header is written for ``max_rows`` and rewritten with the real count at the end (its
    padded length does not change), so the rows stream to disk without being held in memory.
    """
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    header = _npy_header(max_rows)
    rows = 0
    with open(tmp, "wb") as f:
        f.write(header)
        for block, first_line in blocks:
            where = f"{os.path.basename(path)[:-4]} (raw line {first_line})"
            data = parse_lines(block, where)
            f.write(data.tobytes())
            rows += len(data)
        final = _npy_header(rows)
        if len(final) != len(header):  # pragma: no cover - the padding makes this not happen
            raise SetupError(f"{path}: npy header length changed; report this")
        f.seek(0)
        f.write(final)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rows


def _blocks(lines: Iterator[bytes], count: int, first: int) -> Iterator[tuple[bytes, int]]:
    """Up to ``count`` lines of ``lines`` as joined blocks of BLOCK_LINES (line numbers from 1)."""
    done = 0
    while done < count:
        block = list(itertools.islice(lines, min(BLOCK_LINES, count - done)))
        if not block:
            return
        yield b"".join(block), first + done
        done += len(block)


def prepare_day(day: int, source: str, out: str, lines_per_chunk: int) -> dict:
    """Write ``day_{day}_{NN}.npy`` for one raw day file (resuming), then ``day_{day}.json``."""
    marker = os.path.join(out, f"day_{day}.json")
    if os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        names = [chunk_name(day, k) for k in range(len(info["chunks"]))]
        ok = info.get("lines_per_chunk") == lines_per_chunk and all(
            chunk_rows(os.path.join(out, n + ".npy")) == r for n, r in zip(names, info["chunks"])
        )
        if ok:
            return {**info, "day": day, "new_rows": 0, "seconds": 0.0}
        os.remove(marker)  # a chunk vanished or the chunk size changed: redo the day
    t0 = time.time()
    chunks, new_rows = [], 0
    try:
        with _open(source) as f:
            lines = iter(f)
            for k in itertools.count():
                name = chunk_name(day, k)
                path = os.path.join(out, name + ".npy")
                first = k * lines_per_chunk + 1
                have = chunk_rows(path)
                if have is not None:  # finished by an earlier run: skip its lines
                    n = sum(1 for _ in itertools.islice(lines, lines_per_chunk))
                    if n != have:
                        raise SetupError(
                            f"{path} holds {have} rows but {source} has {n} lines for it; "
                            f"delete {os.path.join(out, f'day_{day}_*')} and rerun"
                        )
                else:
                    blocks = _blocks(lines, lines_per_chunk, first)
                    n = write_chunk(blocks, path, lines_per_chunk)
                    if n == 0:
                        os.remove(path)
                    new_rows += n
                if n == 0:
                    break
                chunks.append(n)
                if n < lines_per_chunk:
                    break
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise SetupError(f"{source} is truncated or corrupt ({e}); fetch it again") from None
    except ParseError as e:
        raise SetupError(f"{source}: {e}") from None
    info = {
        "source": os.path.basename(source),
        "lines": sum(chunks),
        "lines_per_chunk": lines_per_chunk,
        "chunks": chunks,
    }
    tmp = marker + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, marker)
    return {**info, "day": day, "new_rows": new_rows, "seconds": time.time() - t0}


def _prepare_day_star(args: tuple) -> dict:
    try:
        return prepare_day(*args)
    except SetupError as e:
        return {"day": args[0], "error": str(e)}


def check_counts(days: dict[int, dict], allow_partial: bool) -> list[str]:
    """Differences from the official layout (missing days, line totals)."""
    problems = []
    missing = [d for d in range(NUM_DAYS) if d not in days]
    if missing:
        problems.append(f"missing days: {', '.join(f'day_{d}' for d in missing)}")
    train = sum(days[d]["lines"] for d in days if d < 23)
    if train != TRAIN_LINES:
        problems.append(f"days 0-22 hold {train:,} lines, the official count is {TRAIN_LINES:,}")
    if 23 in days and days[23]["lines"] != DAY_23_LINES:
        problems.append(f"day 23 holds {days[23]['lines']:,} lines, officially {DAY_23_LINES:,}")
    return problems


def write_index(out: str, days: dict[int, dict], lines_per_chunk: int) -> None:
    files = {
        chunk_name(d, k): rows for d in sorted(days) for k, rows in enumerate(days[d]["chunks"])
    }
    index = {
        "format": "algoperf-torch criteo1tb v1",
        "row": "float32: label, 13 x log(max(x,0)+1), 26 x float32(fingerprint64 % buckets)",
        "lines_per_chunk": lines_per_chunk,
        "days": {str(d): days[d]["lines"] for d in sorted(days)},
        "files": files,
    }
    tmp = os.path.join(out, INDEX_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(index, f, indent=1)
    os.replace(tmp, os.path.join(out, INDEX_FILE))


def run(args: argparse.Namespace) -> int:
    """Prepare every day found, verify the counts, write the index; 0 on success, 1 on failure."""
    data_dir = os.path.expanduser(args.data_dir)
    out = os.path.join(data_dir, FOLDER)
    archives = os.path.expanduser(args.archives_dir or os.path.join(out, "raw"))
    mirrors = [args.mirror] if args.mirror else list(MIRRORS)
    sources = find_sources(archives)
    missing = [d for d in range(NUM_DAYS) if d not in sources]
    errors = []
    if missing and not args.no_download:
        errors = download_missing(archives, missing, mirrors)
        sources = find_sources(archives)
        missing = [d for d in range(NUM_DAYS) if d not in sources]
    if missing:
        shown = [e.replace("\n", "\n  ") for e in errors[:3]] + (
            [f"... and {len(errors) - 3} more"] if len(errors) > 3 else []
        )
        message = f"{archives} lacks " + ", ".join(f"day_{d}.gz" for d in missing)
        if args.no_download:
            message += " (--no-download)"
        elif errors:
            message += "; downloading failed:\n  " + "\n  ".join(shown)
        where = " or ".join(f"{m.rstrip('/')}/day_N.gz" for m in mirrors)
        message += f"\nDownload them ({where}; ~14 GB a day) and put them in --archives-dir"
        if not sources or not args.allow_partial:
            extra = (
                "" if not sources else ", or pass --allow-partial to prepare only the days present"
            )
            print(f"Criteo 1TB setup failed: {message}{extra}.", file=sys.stderr)
            return 1
        print(f"warning: {message}; preparing the days present (--allow-partial)", file=sys.stderr)
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):  # leftovers of an interrupted run
        if name.endswith(".tmp"):
            os.remove(os.path.join(out, name))
    t0 = time.time()
    jobs = [(d, s, out, args.lines_per_chunk) for d, s in sorted(sources.items())]
    days, errors = {}, []
    workers = max(1, min(args.workers, len(jobs)))
    with multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else _Serial() as pool:
        for res in pool.imap_unordered(_prepare_day_star, jobs):
            if "error" in res:
                errors.append(res["error"])
                continue
            days[res["day"]] = res
            rate = res["new_rows"] / res["seconds"] if res["seconds"] else 0.0
            state = "already prepared" if not res["new_rows"] else f"{rate:,.0f} rows/s"
            print(
                f"day_{res['day']}: {res['lines']:,} lines, {len(res['chunks'])} chunks ({state})"
            )
    if errors:
        print("Criteo 1TB setup failed:\n" + "\n".join(errors), file=sys.stderr)
        return 1
    new_rows = sum(d["new_rows"] for d in days.values())
    elapsed = time.time() - t0
    problems = check_counts(days, args.allow_partial)
    if problems and not args.allow_partial:
        print(
            "Criteo 1TB setup failed: " + "; ".join(problems) + ". The finished days are kept; "
            "pass --allow-partial to use what is there.",
            file=sys.stderr,
        )
        return 1
    for p in problems:
        print(f"warning: {p} (--allow-partial)", file=sys.stderr)
    write_index(out, days, args.lines_per_chunk)
    print(
        f"Criteo 1TB: {sum(d['lines'] for d in days.values()):,} lines in {len(days)} days; "
        f"{new_rows:,} rows prepared now in {elapsed:.1f} s "
        f"({new_rows / elapsed if elapsed else 0:,.0f} rows/s with {workers} workers)."
    )
    print(f"  data: {out}")
    print(f"  train: python -m algoperf_torch workload=criteo1tb data.data_dir={data_dir}")
    return 0


class _Serial:
    """A one-process stand-in for ``Pool`` (no process start-up for one worker)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def imap_unordered(self, fn, jobs):
        return map(fn, jobs)
