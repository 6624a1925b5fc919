"""WMT benchmarks: beam-search throughput (with and without the KV cache) and the packed loader.

``decode`` translates ``--sentences`` random source sentences (default 3,000 = the validation
split) in eval batches of 128 with beam 4 and prints sentences/s, with the per-layer key/value
cache and with the prefix recomputed every step. A random model rarely emits EOS, so every
sentence runs the full 255 steps: an upper bound on a trained model's decode time.
``loader`` writes a synthetic prepared split (random ids, WMT-like lengths) and times the packed
train iterator: examples/s and rows/s on one core.

    python benchmarks/bench_wmt.py decode --d-model 64 --layers 2 --sentences 3000
    python benchmarks/bench_wmt.py loader --pairs 200000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from algoperf_torch.spec import DataRequest
from algoperf_torch.workloads.wmt.data import Corpus, PackedTrainBatches
from algoperf_torch.workloads.wmt.decode import beam_search
from algoperf_torch.workloads.wmt.model import Transformer, TransformerConfig


def random_sources(n: int, vocab: int, gen: torch.Generator, length: int = 256) -> torch.Tensor:
    """[n, length] ids: 5-60 real tokens ending in EOS, then padding."""
    src = torch.zeros(n, length, dtype=torch.long)
    lengths = torch.randint(5, 61, (n,), generator=gen)
    for i, m in enumerate(lengths.tolist()):
        src[i, :m] = torch.randint(3, vocab, (m,), generator=gen)
        src[i, m - 1] = 2
    return src


def bench_decode(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        ntoken=args.vocab, d_model=args.d_model, nhead=args.heads, d_hid=args.d_model,
        nlayers=args.layers,
    )  # fmt: skip
    model = Transformer(cfg).eval()
    src = random_sources(args.sentences, args.vocab, torch.Generator().manual_seed(1))
    out = {"config": {**vars(args)}, "params": sum(p.numel() for p in model.parameters())}
    for use_cache in (True, False):
        n = args.sentences if use_cache else min(args.sentences, args.no_cache_sentences)
        start = time.perf_counter()
        for lo in range(0, n, args.batch):
            beam_search(model, src[lo : min(lo + args.batch, n)], use_cache=use_cache)
        seconds = time.perf_counter() - start
        key = "kv_cache" if use_cache else "no_cache"
        out[key] = {"sentences": n, "seconds": seconds, "sentences_per_s": n / seconds}
    out["speedup"] = out["kv_cache"]["sentences_per_s"] / out["no_cache"]["sentences_per_s"]
    return out


def write_prepared(folder: str, pairs: int, seed: int = 0) -> None:
    """A prepared train split of random ids (lengths ~ WMT's: mean ≈ 30, up to 300)."""
    rng = np.random.default_rng(seed)
    for side in ("inputs", "targets"):
        lengths = np.clip(rng.gamma(2.0, 15.0, pairs).astype(np.int64) + 2, 2, 300)
        offsets = np.zeros(pairs + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = rng.integers(3, 32000, int(offsets[-1]), dtype=np.uint16)
        ids[offsets[1:] - 1] = 2
        np.save(os.path.join(folder, f"train_{side}.npy"), ids)
        np.save(os.path.join(folder, f"train_{side}_offsets.npy"), offsets)


def bench_loader(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        write_prepared(folder, args.pairs)
        corpus = Corpus(folder, "train")
        request = DataRequest("train", folder, args.batch, seed=0)
        it = PackedTrainBatches(corpus, request, 256, 256)
        next(it)
        start, segments = time.perf_counter(), 0
        for _ in range(args.batches):
            segments += int(next(it)["targets_segmentation"].max(1).values.sum())
        seconds = time.perf_counter() - start
    return {
        "batch_rows": args.batch,
        "examples_per_s": segments / seconds,
        "rows_per_s": args.batch * args.batches / seconds,
        "examples_per_row": segments / (args.batch * args.batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    dec = sub.add_parser("decode")
    dec.add_argument("--sentences", type=int, default=3000)
    dec.add_argument("--no-cache-sentences", type=int, default=3000)
    dec.add_argument("--batch", type=int, default=128)
    dec.add_argument("--d-model", type=int, default=64)
    dec.add_argument("--heads", type=int, default=4)
    dec.add_argument("--layers", type=int, default=2)
    dec.add_argument("--vocab", type=int, default=32000)
    load = sub.add_parser("loader")
    load.add_argument("--pairs", type=int, default=200_000)
    load.add_argument("--batch", type=int, default=128)
    load.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    result = bench_decode(args) if args.what == "decode" else bench_loader(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
