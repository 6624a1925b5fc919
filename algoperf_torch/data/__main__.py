"""Dataset setup: ``python -m algoperf_torch.data <dataset> --data-dir D [options]``.

Each dataset module exposes ``add_arguments(parser)`` and ``run(args) -> int``; it downloads
(where the machine can) and prepares the files our loaders read, idempotently. Only the chosen
dataset's module is imported.

    python -m algoperf_torch.data --help
    python -m algoperf_torch.data mnist --data-dir ~/data
    python -m algoperf_torch.data mnist --help
"""

from __future__ import annotations

import argparse
import importlib
import sys

# dataset name -> (module implementing add_arguments/run, one-line help).
DATASETS: dict[str, tuple[str, str]] = {
    "cifar": ("algoperf_torch.data.cifar", "CIFAR-10 python batches (download + extract)"),
    "criteo1tb": (
        "algoperf_torch.data.criteo1tb",
        "Criteo 1TB day_N.gz click logs (download, parse + hash once into memory-mapped chunks)",
    ),
    "fastmri": (
        "algoperf_torch.data.fastmri",
        "fastMRI knee single-coil from the official archives (extract, check, index)",
    ),
    "finewebedu_lm": (
        "algoperf_torch.data.finewebedu_lm",
        "FineWeb-Edu sample-10BT parquet -> GPT-2 token files (download or --archives-dir)",
    ),
    "imagenet": (
        "algoperf_torch.data.imagenet",
        "ImageNet + ImageNet-v2 from the official archives (extract into class folders)",
    ),
    "librispeech": (
        "algoperf_torch.data.librispeech",
        "LibriSpeech from the OpenSLR archives (tokenizer + memory-mapped int16 audio)",
    ),
    "mnist": ("algoperf_torch.data.mnist", "MNIST idx files (download + check)"),
    "ogbg": ("algoperf_torch.data.ogbg", "ogbg-molpcba from OGB's pcba.zip (flat arrays)"),
    "wmt": (
        "algoperf_torch.data.wmt",
        "WMT17/14 de-en from the statmt.org files (download): SentencePiece + memory-mapped ids",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(
        prog="python -m algoperf_torch.data",
        description="Download and prepare a dataset in the layout algoperf-torch reads.",
        epilog="datasets: " + "; ".join(f"{k}: {h}" for k, (_, h) in DATASETS.items()),
    )
    top.add_argument(
        "dataset",
        choices=sorted(DATASETS),
        metavar="DATASET",
        help=f"one of {', '.join(sorted(DATASETS))}",
    )
    known, _ = top.parse_known_args(argv[:1] or argv)
    module_name, help_text = DATASETS[known.dataset]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"python -m algoperf_torch.data {known.dataset}", description=help_text
    )
    parser.add_argument("--data-dir", required=True, help="root folder of the prepared datasets")
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
