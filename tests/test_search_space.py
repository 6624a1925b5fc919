"""Search-space loading, validation errors and the list form.

.venv/bin/python -m pytest tests/test_search_space.py -q
"""

import json

import pytest

from algoperf_torch.tuning.search_space import (
    SearchSpaceError,
    generate_search,
    load_search_space,
    main,
)


def _write(tmp_path, obj, name="space.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"min": 1e-3, "max": 1e-1, "scaling": "cubic"}, ["'scaling'", "'cubic'", "linear"]),
        ({"min": 1.0, "max": 0.1, "scaling": "linear"}, ["'min' 1.0 > 'max' 0.1"]),
        ({"feasible_points": []}, ["'feasible_points'", "[]", "non-empty list"]),
        ({"feasible_points": 0.1}, ["'feasible_points' is 0.1", "non-empty list"]),
        ({"min": 0.0, "max": 1.0, "scaling": "log"}, ["'min' is 0.0 on a log scale"]),
        ({"min": -1.0, "max": 1.0, "scaling": "log"}, ["log scale", "min > 0"]),
        ({"min": "0.1", "max": 1.0, "scaling": "linear"}, ["'min' is '0.1'", "finite number"]),
        ({"min": True, "max": 1.0, "scaling": "linear"}, ["'min' is True"]),
        ({"min": 0.1, "max": 1.0}, ["missing keys ['scaling']"]),
        ({"min": 0.1, "max": 1.0, "scaling": "log", "step": 2}, ["unexpected keys ['step']"]),
        ({"feasible_points": [1], "scaling": "log"}, ["unexpected keys ['scaling']"]),
        (0.1, ["got 0.1", "feasible_points"]),
    ],
)
def test_bad_spec_errors_name_file_key_and_value(tmp_path, spec, words):
    path = _write(
        tmp_path, {"learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"}, "bad_key": spec}
    )
    with pytest.raises(SearchSpaceError) as err:
        load_search_space(path)
    message = str(err.value)
    assert str(path) in message and "'bad_key'" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", ["not valid JSON", "line 1"]),
        ("3", ["top level is int"]),
        ("{}", ["empty"]),
        ("[]", ["empty"]),
        ('[{"lr": 0.1}, {"wd": 0.1}]', ["point 1 has keys ['wd']", "point 0 has ['lr']"]),
        ('[{"lr": 0.1}, 3]', ["point 1 is 3"]),
        ('{"1lr": {"feasible_points": [1]}}', ["'1lr'", "identifier"]),
    ],
)
def test_bad_files(tmp_path, content, words):
    path = _write(tmp_path, content)
    with pytest.raises(SearchSpaceError) as err:
        load_search_space(path)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_missing_file_lists_shipped_spaces(tmp_path):
    with pytest.raises(FileNotFoundError, match="not_there.json"):
        load_search_space(tmp_path / "not_there.json")


def test_list_form_takes_first_points_in_order():
    points = [{"lr": 0.1, "wd": 1}, {"lr": 0.2, "wd": 2}, {"wd": 3, "lr": 0.3}]
    assert generate_search(points, 2) == points[:2]
    assert generate_search(points, 10, seed=3) == [
        {"lr": 0.1, "wd": 1},
        {"lr": 0.2, "wd": 2},
        {"lr": 0.3, "wd": 3},
    ]


def test_values_keep_json_types_and_ranges():
    space = {
        "lr": {"min": 1, "max": 3, "scaling": "linear"},
        "bs": {"feasible_points": [16, 32, "x"]},
        "wd": {"min": 0.5, "max": 0.5, "scaling": "log"},
    }
    points = generate_search(space, 20, seed=0)
    assert len(points) == 20
    for p in points:
        assert isinstance(p["lr"], float) and 1 <= p["lr"] < 3
        assert p["bs"] in (16, 32, "x")
        assert p["wd"] == pytest.approx(0.5)
    assert {type(p["bs"]) for p in points} <= {int, str}


def test_bad_num_trials():
    with pytest.raises(ValueError, match="num_trials"):
        generate_search({"a": {"feasible_points": [1]}}, 0)


def test_cli_prints_points(tmp_path, capsys):
    path = _write(tmp_path, {"a": {"feasible_points": [1, 2]}})
    main([str(path), "3", "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["a"] in (1, 2) for line in lines)
