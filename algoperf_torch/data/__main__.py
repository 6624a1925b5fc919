"""Dataset setup: ``python -m algoperf_torch.data <dataset> --data-dir D [options]``.

Each dataset module exposes ``add_arguments(parser)`` and ``run(args) -> int``; it downloads
(where the machine can) and prepares the files our loaders read, idempotently.

    python -m algoperf_torch.data --help
    python -m algoperf_torch.data mnist --data-dir ~/data
"""

from __future__ import annotations

import argparse
import importlib
import sys

# dataset name -> module implementing add_arguments/run.
DATASETS: dict[str, str] = {
    "mnist": "algoperf_torch.data.mnist",
    "cifar": "algoperf_torch.data.cifar",
    "imagenet": "algoperf_torch.data.imagenet",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m algoperf_torch.data",
        description="Download and prepare a dataset in the layout algoperf-torch reads.",
    )
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    for name, module_name in DATASETS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        p.add_argument("--data-dir", required=True, help="root folder of the prepared datasets")
        module.add_arguments(p)
    args = parser.parse_args(argv)
    return importlib.import_module(DATASETS[args.dataset]).run(args)


if __name__ == "__main__":
    sys.exit(main())
