"""Tiny Criteo 1TB day files in the official raw format, for the setup and pipeline tests.

Each line: label, 13 integers, 26 categorical 8-digit hex strings, tab-separated, with the
quirks of the real logs: empty fields, ``-1`` na values, negative integers.
"""

from __future__ import annotations

import gzip
import os
import random


def raw_line(rng: random.Random) -> str:
    label = str(int(rng.random() < 0.3))
    dense = [
        rng.choice(["", "-1", "-2", "0", str(rng.randint(1, 60)), str(rng.randint(100, 10**7))])
        for _ in range(13)
    ]
    cats = [
        rng.choice(["", "-1", f"{rng.randrange(16**8):08x}", f"{rng.randrange(40):08x}"])
        for _ in range(26)
    ]
    return "\t".join([label, *dense, *cats])


def write_day(folder: str, day: int, lines: int, seed: int = 0, gz: bool = True) -> list[str]:
    """Write ``day_{day}.gz`` (or plain ``day_{day}``) with ``lines`` lines; returns them."""
    rng = random.Random(seed * 1000 + day)
    rows = [raw_line(rng) for _ in range(lines)]
    text = "".join(r + "\n" for r in rows).encode()
    path = os.path.join(folder, f"day_{day}.gz" if gz else f"day_{day}")
    with gzip.open(path, "wb") if gz else open(path, "wb") as f:
        f.write(text)
    return rows


# Days and line counts of the standard tiny dataset: 3 train days and day 23 with the
# reference's 36 chunks at 5 lines per chunk (the last one short).
LINES_PER_CHUNK = 5
TINY_DAYS = {0: 23, 1: 17, 2: 10, 23: 35 * 5 + 3}
SMALL_DAYS = {0: 23, 1: 17, 2: 10, 23: 12}  # for the setup tests: day 23 in 3 chunks only


def write_tiny(
    folder: str, seed: int = 0, days: dict[int, int] = TINY_DAYS
) -> dict[int, list[str]]:
    """Day ``d`` with ``days[d]`` lines (day 1 decompressed, the others gzipped)."""
    os.makedirs(folder, exist_ok=True)
    return {d: write_day(folder, d, n, seed, gz=d != 1) for d, n in days.items()}
