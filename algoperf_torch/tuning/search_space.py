"""Tuning search spaces in the AlgoPerf JSON format, validated, and the points of a study.

    python -m algoperf_torch.tuning.search_space path/to/tuning_search_space.json 5 --seed 0

Two forms, as the reference reads them [algoperf/halton.py `generate_search`; RULES.md §3.1]:

* dict form, `{name: spec}` with spec `{"min": a, "max": b, "scaling": "log"|"linear"}` or
  `{"feasible_points": [v1, v2, ...]}`: one quasi-random (Halton) point per trial;
* list form, `[{name: value, ...}, ...]`: explicit points, the first `num_trials` in order.

Differences from the reference, all on inputs it would misread or on irreproducible behaviour:
a scaling other than "log"/"linear" is an error (the reference silently treats it as linear);
a spec with unknown keys, an empty or scalar `feasible_points`, `min > max`, non-positive
bounds on a log scale, a non-numeric bound, list entries with differing keys are errors naming
the file, the key and the value. The order of dict-form points is shuffled by `seed` with
`numpy.random.RandomState(seed).shuffle` (the reference uses the unseeded global numpy RNG, so
its order is not reproducible; the set of points is identical).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from algoperf_torch.tuning.halton import halton_points

SCALINGS = ("linear", "log")
_CONTINUOUS_KEYS = {"min", "max", "scaling"}
_DISCRETE_KEYS = {"feasible_points"}
_ACCEPTED = (
    '{"min": number, "max": number, "scaling": "linear"|"log"} or {"feasible_points": [value, ...]}'
)

# Where `optimizer.search_space: <file name>` is looked up.
SEARCH_SPACE_DIR = Path(__file__).resolve().parents[1] / "optimizers" / "search_spaces"


class SearchSpaceError(ValueError):
    """A search space that cannot be used; the message names the file, key and bad value."""


@dataclass(frozen=True)
class Continuous:
    """A float hyperparameter drawn on a linear or log scale between `low` and `high`."""

    name: str
    low: float
    high: float
    scaling: str

    def value(self, u: float) -> float:
        """Map `u` in [0, 1) to the range, with the reference's float operations."""
        if self.scaling == "log":
            return self.low * math.exp(u * math.log(self.high / self.low))
        return u * (self.high - self.low) + self.low


@dataclass(frozen=True)
class Discrete:
    """A hyperparameter taking one of `feasible_points` (values kept as parsed from JSON)."""

    name: str
    feasible_points: tuple[Any, ...]

    def value(self, u: float) -> Any:
        """Pick the point `floor(u * len)`, as the reference does."""
        return self.feasible_points[int(math.floor(u * len(self.feasible_points)))]


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: either `params` (dict form) or `points` (list form)."""

    names: tuple[str, ...]
    params: tuple[Continuous | Discrete, ...] = ()
    points: tuple[dict[str, Any], ...] = ()
    source: str = "<search space>"

    @property
    def is_list(self) -> bool:
        """True for the list form (explicit points)."""
        return not self.params


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_name(name: Any, where: str) -> str:
    # The reference turns each point into a namedtuple, which needs identifier field names.
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise SearchSpaceError(
            f"{where}: hyperparameter name {name!r} is not usable; accepted: a Python "
            "identifier not starting with '_' (e.g. 'learning_rate')"
        )
    return name


def _parse_param(name: str, spec: Any, source: str) -> Continuous | Discrete:
    where = f"{source}: key {name!r}"
    if not isinstance(spec, dict):
        raise SearchSpaceError(f"{where}: got {spec!r}; accepted: {_ACCEPTED}")
    keys = set(spec)
    if "feasible_points" in keys:
        if keys != _DISCRETE_KEYS:
            raise SearchSpaceError(
                f"{where}: unexpected keys {sorted(keys - _DISCRETE_KEYS)} next to "
                f"'feasible_points'; accepted: {_ACCEPTED}"
            )
        points = spec["feasible_points"]
        if not isinstance(points, list) or not points:
            raise SearchSpaceError(
                f"{where}: 'feasible_points' is {points!r}; accepted: a non-empty list"
            )
        return Discrete(name, tuple(points))
    if keys != _CONTINUOUS_KEYS:
        missing, extra = sorted(_CONTINUOUS_KEYS - keys), sorted(keys - _CONTINUOUS_KEYS)
        raise SearchSpaceError(
            f"{where}: missing keys {missing}, unexpected keys {extra}; accepted: {_ACCEPTED}"
        )
    low, high, scaling = spec["min"], spec["max"], spec["scaling"]
    for label, bound in (("min", low), ("max", high)):
        if not _is_number(bound):
            raise SearchSpaceError(f"{where}: '{label}' is {bound!r}; accepted: a finite number")
    if scaling not in SCALINGS:
        raise SearchSpaceError(f"{where}: 'scaling' is {scaling!r}; accepted: {list(SCALINGS)}")
    if low > high:
        raise SearchSpaceError(f"{where}: 'min' {low!r} > 'max' {high!r}; accepted: min <= max")
    if scaling == "log" and low <= 0:
        raise SearchSpaceError(
            f"{where}: 'min' is {low!r} on a log scale; accepted: min > 0 and max > 0"
        )
    return Continuous(name, low, high, scaling)


def parse_search_space(raw: Any, source: str = "<search space>") -> SearchSpace:
    """Validate a search space as parsed from JSON.

    Args:
        raw: the parsed JSON: a dict (dict form) or a list of dicts (list form).
        source: how to name the input in error messages (usually the file path).

    Returns:
        The validated `SearchSpace`.

    Raises:
        SearchSpaceError: naming the source, the key and the bad value, and what is accepted.
    """
    if isinstance(raw, SearchSpace):
        return raw
    if isinstance(raw, dict):
        if not raw:
            raise SearchSpaceError(f"{source}: the search space is empty; accepted: {_ACCEPTED}")
        params = tuple(_parse_param(_check_name(n, source), s, source) for n, s in raw.items())
        return SearchSpace(tuple(raw), params=params, source=source)
    if isinstance(raw, list):
        if not raw:
            raise SearchSpaceError(f"{source}: the list of points is empty")
        if not all(isinstance(p, dict) for p in raw):
            bad = next(i for i, p in enumerate(raw) if not isinstance(p, dict))
            raise SearchSpaceError(
                f"{source}: point {bad} is {raw[bad]!r}; accepted: an object {{name: value}}"
            )
        names = tuple(_check_name(n, source) for n in raw[0])
        for i, point in enumerate(raw):
            if tuple(point) != names and set(point) != set(names):
                raise SearchSpaceError(
                    f"{source}: point {i} has keys {sorted(point)}, point 0 has "
                    f"{sorted(names)}; accepted: every point with the same keys"
                )
        return SearchSpace(
            names, points=tuple({n: p[n] for n in names} for p in raw), source=source
        )
    raise SearchSpaceError(
        f"{source}: top level is {type(raw).__name__}; accepted: an object {{name: spec}} "
        "or a list of points [{name: value}, ...]"
    )


def resolve_search_space_path(name_or_path: str | Path) -> Path:
    """Find a search-space file: an existing path, or a file name in `optimizers/search_spaces/`.

    Args:
        name_or_path: an absolute/relative path, or a bare file name (".json" optional).

    Returns:
        The existing file's path.

    Raises:
        FileNotFoundError: listing the shipped search spaces.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    for candidate in (SEARCH_SPACE_DIR / path.name, SEARCH_SPACE_DIR / f"{path.name}.json"):
        if not path.is_absolute() and candidate.is_file():
            return candidate
    shipped = (
        sorted(p.name for p in SEARCH_SPACE_DIR.glob("*.json")) if SEARCH_SPACE_DIR.is_dir() else []
    )
    raise FileNotFoundError(
        f"search space {str(name_or_path)!r} not found (as a path, or under {SEARCH_SPACE_DIR}); "
        f"shipped: {shipped}"
    )


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space JSON file.

    Args:
        path: the file, or a file name under `algoperf_torch/optimizers/search_spaces/`.

    Returns:
        The validated `SearchSpace` (its `source` is the file path).

    Raises:
        FileNotFoundError: the file does not exist.
        SearchSpaceError: the file is not valid JSON or not a valid search space.
    """
    file = resolve_search_space_path(path)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SearchSpaceError(
            f"{file}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    return parse_search_space(raw, source=str(file))


def generate_search(
    search_space: SearchSpace | dict | list, num_trials: int, seed: int | None = None
) -> list[dict[str, Any]]:
    """The hyperparameter points of a study, in the order its trials run.

    Dict form: the reference's `num_trials` Halton points (the same set the reference draws),
    in sequence order if `seed` is None, else shuffled by `RandomState(seed).shuffle`.
    List form: the first `min(num_trials, len(points))` points in file order (never shuffled).

    Args:
        search_space: a `SearchSpace`, or the parsed JSON of one.
        num_trials: number of points wanted (>= 1).
        seed: shuffles the order of dict-form points; None keeps sequence order.

    Returns:
        One dict `{name: value}` per trial, keys in the file's order.
    """
    space = parse_search_space(search_space)
    if isinstance(num_trials, bool) or not isinstance(num_trials, int) or num_trials < 1:
        raise ValueError(f"num_trials must be a positive int, got {num_trials!r}")
    if space.is_list:
        return [dict(p) for p in space.points[:num_trials]]
    unit_points = halton_points(num_trials, len(space.params))
    if seed is not None:
        np.random.RandomState(seed).shuffle(unit_points)
    return [{p.name: p.value(u) for p, u in zip(space.params, point)} for point in unit_points]


def main(argv: list[str] | None = None) -> None:
    """Print the points of a search space as JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("search_space", help="JSON file, or a name under optimizers/search_spaces")
    parser.add_argument("num_trials", type=int)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    for point in generate_search(load_search_space(args.search_space), args.num_trials, args.seed):
        print(json.dumps(point))


if __name__ == "__main__":
    main()
