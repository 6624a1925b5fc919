"""The resumable-iterator contract (``spec.StatefulIterator``) for the in-memory and synthetic
pipelines: a state saved after any batch, loaded into a fresh iterator, continues bit for bit;
states load with ``weights_only=True``; a state of another stream is refused.

    python -m pytest tests/test_pipeline_state.py
"""

from __future__ import annotations

import io

import pytest
import torch

from algoperf_torch.pipelines.in_memory import EvalBatches, TrainBatches, in_memory_batches
from algoperf_torch.pipelines.state import PipelineStateError
from algoperf_torch.pipelines.synthetic import SyntheticBatches
from algoperf_torch.spec import DataRequest, StatefulIterator
from algoperf_torch.workloads import get_workload_functions
from algoperf_torch.workloads.__main__ import load_config

N = 50  # examples; global batch 8 -> 6 batches per epoch, 2 examples dropped each epoch


def jitter(batch, gen):
    """An augmentation that draws from the pipeline's generator."""
    return {**batch, "inputs": batch["inputs"] + torch.rand(len(batch["inputs"]), 1, generator=gen)}


def data():
    return torch.randn(N, 3, generator=torch.Generator().manual_seed(1)), torch.arange(N)


def weights_only_round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def assert_same_batches(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x)


def train(rank=0, world=1, seed=3, batch=4):
    request = DataRequest("train", "", batch, seed, rank=rank, world_size=world)
    return TrainBatches(*data(), request, jitter, augment=True)


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("taken", [0, 1, 5, 6, 7, 13])  # start, mid-epoch, epoch edges
def test_train_batches_resume_bit_for_bit_across_epochs(rank, taken):
    whole = train(rank, world=2)
    assert isinstance(whole, StatefulIterator)
    expected = [next(whole) for _ in range(20)]
    first = train(rank, world=2)
    for _ in range(taken):
        next(first)
    resumed = train(rank, world=2)
    resumed.load_state_dict(weights_only_round_trip(first.state_dict()))
    assert_same_batches([next(resumed) for _ in range(20 - taken)], expected[taken:])


def test_train_epochs_cover_each_example_at_most_once_across_ranks():
    ranks = [train(r, world=2) for r in range(2)]
    epoch = [t for _ in range(6) for it in ranks for t in next(it)["targets"].tolist()]
    assert len(epoch) == 48 and len(set(epoch)) == 48


def test_eval_and_synthetic_iterators_resume():
    request = DataRequest("validation", "", 4, 3, num_examples=18)
    x, y = data()
    whole = list(EvalBatches(x, y, request))
    assert sum(len(b["targets"]) for b in whole) == 18
    part = EvalBatches(x, y, request)
    next(part), next(part)
    rest = EvalBatches(x, y, request)
    rest.load_state_dict(weights_only_round_trip(part.state_dict()))
    assert_same_batches(list(rest), whole[2:])

    config, functions = load_config("digits"), get_workload_functions("digits")
    for split, num in (("train", None), ("test", 10)):
        req = DataRequest(split, "", 4, 5, num_examples=num)
        whole = SyntheticBatches(config, functions, req)
        expected = [b for b, _ in zip(whole, range(3))]
        part = SyntheticBatches(config, functions, req)
        next(part)
        rest = SyntheticBatches(config, functions, req)
        rest.load_state_dict(weights_only_round_trip(part.state_dict()))
        assert_same_batches([b for b, _ in zip(rest, range(2))], expected[1:])


@pytest.mark.parametrize(
    "other, field",
    [
        (dict(seed=4), "seed"),
        (dict(batch=8), "batch_size"),
        (dict(rank=1, world=2), "rank"),
    ],
)
def test_a_state_of_another_stream_is_refused(other, field):
    state = train().state_dict()
    kwargs = {"rank": 0, "world": 1, "seed": 3, "batch": 4, **other}
    with pytest.raises(PipelineStateError, match=rf"{field}: saved .*, this pipeline"):
        train(**kwargs).load_state_dict(state)
    splits = {"train": data(), "validation": data(), "test": data()}
    val = in_memory_batches(splits, DataRequest("validation", "", 4, 3, num_examples=10))
    with pytest.raises(PipelineStateError, match="kind: saved 'in_memory_train'"):
        val.load_state_dict(state)


def test_to_device_keeps_tuples_and_named_tuples():
    from collections import namedtuple

    from algoperf_torch.pipelines.state import to_device

    Pair = namedtuple("Pair", ["a", "b"])
    batch = {
        "x": torch.ones(2),
        "t": (torch.zeros(1), torch.ones(1)),
        "n": Pair(torch.ones(3), torch.zeros(3)),
    }
    moved = to_device(batch, torch.device("cpu"))
    assert isinstance(moved["t"], tuple) and len(moved["t"]) == 2
    assert type(moved["n"]) is Pair and torch.equal(moved["n"].a, torch.ones(3))
