"""Tuning: search spaces, the reference's quasi-random (Halton) search and study layout.

    python -m algoperf_torch.tuning.search_space path/to/search_space.json 5 --seed 0

The Hydra sweeper that runs whole studies lives in `hydra_plugins/algoperf_sweeper/` (Hydra
only discovers sweepers in the `hydra_plugins` namespace) and uses `tuning.study`.
"""

from algoperf_torch.tuning.search_space import (
    SearchSpace,
    SearchSpaceError,
    generate_search,
    load_search_space,
    parse_search_space,
)

__all__ = [
    "SearchSpace",
    "SearchSpaceError",
    "generate_search",
    "load_search_space",
    "parse_search_space",
]
