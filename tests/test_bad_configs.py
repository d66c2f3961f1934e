"""A bad config, as a user or an attacker writes it, is one line on stderr and exit 2, naming the
key and the value, before anything trains: `lrbench sweep CONFIG --dry-run` end to end."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrbench.config import MAX_CONFIG_BYTES, SweepConfig, load_config, parse_config
from lrbench.errors import UserError

GOOD = """\
name: bad-configs
dataset: {name: synthetic, limit_train: 128, val_fraction: 0.1}
models: [resnet8]
optimizers: [{name: sgd, lr: 0.1}]
full_epochs: 2
budgets: [0.5, 1.0]
seeds: 1
batch_size: 64
schedules: [cosine]
"""


def edited(**lines: str) -> str:
    """GOOD with the line of each key replaced (or added) by `key: value`."""
    kept = [line for line in GOOD.splitlines() if line.split(":")[0] not in lines]
    return "\n".join([*kept, *(f"{key}: {value}" for key, value in lines.items())]) + "\n"


def dry_run(cli, tmp_path: Path, text: str | bytes):
    config = tmp_path / "sweep.yaml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    return refused(cli, tmp_path, config)


def refused(cli, tmp_path: Path, config: Path) -> str:
    """The one line `lrbench sweep CONFIG --dry-run` answers with, after checking it is one."""
    result = cli("sweep", config, "--results", tmp_path / "results", "--dry-run")
    assert result.code == 2, result.output
    assert result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith(f"error: {config}")
    return line


def test_the_config_these_cases_change_is_good(cli, tmp_path):
    (tmp_path / "sweep.yaml").write_text(GOOD)
    result = cli("sweep", tmp_path / "sweep.yaml", "--results", tmp_path / "r", "--dry-run")
    assert result.code == 0, result.output


BAD = {
    # not-a-number floats, wherever a float goes
    "lr nan": ({"optimizers": "[{name: sgd, lr: .nan}]"}, "optimizers[0].lr: ", "got .nan"),
    "lr inf": ({"optimizers": "[{name: sgd, lr: .inf}]"}, "optimizers[0].lr: ", "got .inf"),
    "lr inf in a grid": (
        {"optimizers": "[{name: sgd, lr: [0.1, .inf]}]"},
        "optimizers[0].lr: ",
        "got [0.1, .inf]",
    ),
    "momentum nan": (
        {"optimizers": "[{name: sgd, lr: 0.1, momentum: .nan}]"},
        "optimizers[0].momentum: Input should be a finite number, got .nan",
    ),
    "weight_decay inf": (
        {"optimizers": "[{name: sgd, lr: 0.1, weight_decay: .inf}]"},
        "optimizers[0].weight_decay: Input should be a finite number, got .inf",
    ),
    "betas nan": (
        {"optimizers": "[{name: adam, lr: 0.1, betas: [.nan, 0.99]}]"},
        "optimizers[0].betas[0]: Input should be a finite number, got .nan",
    ),
    "eps inf": ({"optimizers": "[{name: adam, lr: 0.1, eps: .inf}]"}, "eps: ", "got .inf"),
    "budget nan": ({"budgets": "[.nan]"}, "budgets[0]: Input should be a finite number, got .nan"),
    "val_fraction nan": (
        {"dataset": "{name: synthetic, val_fraction: .nan}"},
        "dataset.val_fraction: Input should be a finite number, got .nan",
    ),
    "min_delta inf": (
        {"early_stop": "{metric: val_acc, patience: 2, min_delta: .inf}"},
        "early_stop.min_delta: Input should be a finite number, got .inf",
    ),
    "mem_gb inf": (
        {"executor": "{name: slurm, mem_gb: .inf}"},
        "executor.mem_gb: Input should be a finite number, got .inf",
    ),
    "schedule parameter nan": (
        {"schedules": "[{name: rex, beta: .nan}]"},
        "schedules[0]: schedule 'rex': beta=nan is not valid",
    ),
    # booleans and strings where numbers belong: no coercion
    "budget true": ({"budgets": "[true]"}, "budgets[0]: Input should be a valid number, got true"),
    "seeds as text": ({"seeds": "'3'"}, "seeds: must be a count >= 1", "got '3'"),
    "seeds true": ({"seeds": "true"}, "seeds: must be a count >= 1", "got true"),
    "batch_size 12.5": ({"batch_size": "12.5"}, "batch_size: ", "got 12.5"),
    "full_epochs as text": (
        {"full_epochs": '"10"'},
        "full_epochs: Input should be a valid integer, got '10'",
    ),
    "lr as text": ({"optimizers": "[{name: sgd, lr: '0.1'}]"}, "optimizers[0].lr: ", "got '0.1'"),
    "nesterov as text": (
        {"optimizers": "[{name: sgd, lr: 0.1, nesterov: 'no'}]"},
        "optimizers[0].nesterov: Input should be a valid boolean, got 'no'",
    ),
    # sizes that cannot run
    "full_epochs 1e20": ({"full_epochs": "1e20"}, "full_epochs: ", "got 1e+20"),
    "full_epochs too many": (
        {"full_epochs": "100001"},
        "full_epochs: Input should be less than or equal to 100000, got 100001",
    ),
    "seed 1e23": ({"seeds": "[100000000000000000000000]"}, "seeds: ", "2**31"),
    "seed 2**31": ({"seeds": "[2147483648]"}, "seeds: ", "got [2147483648]"),
    "batch_size huge": (
        {"batch_size": "100000000000"},
        "batch_size: Input should be less than or equal to 1048576, got 100000000000",
    ),
    "limit_train huge": (
        {"dataset": "{name: synthetic, limit_train: 100000000000000}"},
        "dataset.limit_train: ",
        "got 100000000000000",
    ),
    "seeds 1e9": ({"seeds": "1000000000"}, "the sweep expands to 2,000,000,000 runs", "100,000"),
    "sample_at empty": (
        {"schedules": "[{name: exponential, sample_at: []}]"},
        "schedules[0]: schedule 'exponential': sample_at=[] is not valid",
    ),
    # what would train or count twice
    "model twice": ({"models": "[resnet8, resnet8]"}, "models[1]: 'resnet8' is listed twice"),
    "optimizer twice": (
        {"optimizers": "[{name: sgd, lr: 0.1}, {name: sgd, lr: [0.3, 0.1]}]"},
        "optimizers[1]: sgd with lr 0.1 repeats optimizers[0]",
    ),
    "rate twice": (
        {"optimizers": "[{name: sgd, lr: [0.1, 0.1]}]"},
        "optimizers[0].lr: lists the rate 0.1 twice",
    ),
    "budget twice": ({"budgets": "[0.5, 0.5]"}, "budgets: lists the budget 0.5 twice"),
    # the name is one folder under the results root
    "name ..": ({"name": "'..'"}, "name: '..' is not a plain folder name"),
    "name .": ({"name": "'.'"}, "name: '.' is not a plain folder name"),
    "name with /": ({"name": "a/b"}, "name: 'a/b' is not a plain folder name"),
    "name runs": ({"name": "runs"}, "name: 'runs' is reserved"),
    # a grid is chosen on validation data
    "grid without val_fraction": (
        {"dataset": "synthetic", "optimizers": "[{name: sgd, lr: [0.1, 1000]}]"},
        "optimizers[0].lr: the grid [0.1, 1000.0] is chosen on validation accuracy",
        "dataset.val_fraction",
    ),
    # names as the user wrote them
    "dataset cifar11": (
        {"dataset": "cifar11"},
        "dataset.name: Input should be 'cifar10', 'cifar100', 'stl10', 'synthetic', "
        "'imagefolder', 'import' or 'text', got 'cifar11' (did you mean 'cifar10'?)",
    ),
    "optimizer sgdd": (
        {"optimizers": "[{name: sgdd, lr: 0.1}]"},
        "optimizers[0].name: ",
        "got 'sgdd' (did you mean 'sgd'?)",
    ),
    "schedule neither name nor mapping": (
        {"schedules": "[3]"},
        "schedules[0]: Input should be a valid string or a valid dictionary, got 3",
    ),
}


@pytest.mark.parametrize(("edit", "expected"), [(e, x) for e, *x in BAD.values()], ids=list(BAD))
def test_bad_value_is_one_line_naming_key_and_value(cli, tmp_path, edit, expected):
    line = dry_run(cli, tmp_path, edited(**edit))
    for part in expected:
        assert part in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + "name: again\n",
            "sweep.yaml:10:1: not valid YAML: key 'name' is given twice, on lines 1 and 10",
        ),
        (
            edited(optimizers="[{name: sgd, lr: 0.1, lr: 1.0}]"),
            "not valid YAML: key 'lr' is given twice, on line 9",
        ),
        (
            edited(
                executor="\n  name: slurm\n  sbatch:\n    constraint: a100\n    constraint: h100"
            ),
            "not valid YAML: key 'constraint' is given twice, on lines 13 and 14",
        ),
    ],
    ids=["top level", "in a flow mapping", "three deep"],
)
def test_a_key_given_twice_is_refused_with_both_lines(cli, tmp_path, text, expected):
    assert expected in dry_run(cli, tmp_path, text)


def test_merge_keys_may_still_override_what_they_merge(cli, tmp_path):
    text = edited(
        optimizers="\n  - &sgd {name: sgd, lr: 0.1}\n  - {<<: *sgd, lr: 0.3}",
        dataset="{name: synthetic, val_fraction: 0.1}",
    )
    (tmp_path / "sweep.yaml").write_text(text)
    result = cli("sweep", tmp_path / "sweep.yaml", "--results", tmp_path / "r", "--dry-run")
    assert result.code == 0, result.output


def test_a_folder_or_fifo_says_what_it_is(cli, tmp_path):
    assert refused(cli, tmp_path, tmp_path).endswith("is a folder, not a config file")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "is not a regular file (a named pipe)" in refused(cli, tmp_path, fifo)
    assert refused(cli, tmp_path, tmp_path / "nope.yaml").endswith("no such config file")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            "name: caf\xe9\n".encode("latin-1"),
            "not a text file: byte 0xe9 at offset 9 is not UTF-8",
        ),
        (bytes(range(256)), "not a text file: byte 0x80 at offset 128 is not UTF-8"),
        (b"name: t\x00\n", "sweep.yaml:1:8: not valid YAML: unacceptable character #x0000"),
        (b"#" * (MAX_CONFIG_BYTES + 1), "is too large for a sweep config"),
    ],
    ids=["latin-1", "binary", "NUL", "huge"],
)
def test_a_file_that_is_not_yaml_text_is_refused(cli, tmp_path, data, expected):
    assert expected in dry_run(cli, tmp_path, data)


ALIAS_BOMB = "bomb: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"b{i}: &a{i + 1} [{', '.join([f'*a{i}'] * 10)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ALIAS_BOMB, "this value holds more than 100,000 values"),
        (edited(models="&m [*m]"), "an alias refers to the value that holds it"),
        (edited(schedules="[" * 33 + "]" * 33), "nested deeper than 32 levels"),
        (edited(schedules="[" * 5000 + "]" * 5000), "not valid YAML: "),
        (edited(schedules="".join("\n" + "  " * i + "- " for i in range(1, 60)) + "1"), "deeper"),
    ],
    ids=["alias bomb", "alias cycle", "33 levels", "5000 levels", "block nesting"],
)
def test_yaml_bombs_are_refused_before_they_expand(cli, tmp_path, text, expected):
    assert expected in dry_run(cli, tmp_path, text)


# Any value at any key: accepted, or refused with one line that names the key.
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
CONFIG = {
    "name": "t",
    "dataset": {"name": "synthetic", "val_fraction": 0.1},
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.1}],
    "full_epochs": 10,
    "budgets": [0.5, 1.0],
    "seeds": 2,
    "schedules": ["step", {"name": "rex", "beta": 0.9}],
}
KEYS = [
    ("name",),
    ("dataset",),
    ("dataset", "limit_train"),
    ("dataset", "val_fraction"),
    ("models",),
    ("optimizers",),
    ("optimizers", 0, "lr"),
    ("optimizers", 0, "momentum"),
    ("optimizers", 0, "betas"),
    ("full_epochs",),
    ("budgets",),
    ("seeds",),
    ("batch_size",),
    ("schedules",),
    ("schedules", 1, "beta"),
    ("early_stop",),
    ("executor",),
]


def with_value(path: tuple, value: object) -> dict:
    raw = copy.deepcopy(CONFIG)
    holder = raw
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(KEYS), value=VALUES)
def test_any_value_is_accepted_or_one_line_naming_its_key(path, value):
    try:
        parse_config(with_value(path, value), source="sweep.yaml")
    except UserError as err:
        message = str(err)
        assert "\n" not in message
        assert path[0] in message


def readme_rows() -> list[tuple[str, str, str]]:
    """README's "Bad configs" rows that change one key (`key: value`) and give the message
    whole: (key, value, message)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Bad configs and what lrbench answers")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([a-z_]+): ([^`]*)` \| `(.*)` \|$", section, flags=re.M)
    return [
        (key, value, message)
        for key, value, message in rows
        if key in SweepConfig.model_fields and "..." not in message
    ]


def test_readme_rows_are_what_lrbench_answers(tmp_path, monkeypatch):
    rows = readme_rows()
    assert len(rows) >= 20
    monkeypatch.chdir(tmp_path)
    for key, value, message in rows:
        Path("sweep.yaml").write_text(edited(**{key: value}))
        with pytest.raises(UserError) as info:
            load_config("sweep.yaml")
        assert str(info.value) == message
