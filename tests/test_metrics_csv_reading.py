"""metrics.csv is read field by field as the csv module reads it, whether a line takes the
direct path (no quotes, the trainer's lines) or the csv module's (quoted fields)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrbench.runfiles import read_metrics
from lrbench.verdict import column_kind


def test_plain_and_quoted_lines_read_as_the_csv_module_reads_them(tmp_path: Path) -> None:
    text = (
        "epoch,step,lr,note,test_acc\n"
        "1,8,0.1,,0.5\n"
        '2,16,1e-05,"a, quoted",0.25\n'
        "3,0024,inf,plain text,1\n"
    )
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    found = read_metrics(path)
    assert found.damage is None and found.header == text.splitlines()[0].split(",")
    assert [[str(v) for v in row.values()] for row in found.rows] == [
        ["1", "8", "0.1", "", "0.5"],
        ["2", "16", "1e-05", "a, quoted", "0.25"],
        ["3", "24", "inf", "plain text", "1"],
    ]
    assert [type(found.rows[2][c]) for c in ("epoch", "step", "lr", "test_acc")] == [
        int,
        int,
        float,
        int,
    ]


def test_an_empty_line_has_no_fields(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,test_acc\n1,0.5\n\n")
    assert read_metrics(path).damage == "line 3 has 0 fields, the header has 2"


CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.sampled_from(["", "abc", "0.5"]),
    st.floats(min_value=-1e308, max_value=1e308).map(lambda x: x * 4),  # sums past any float
)


@pytest.mark.parametrize("column", ["test_acc", "train_loss", "step", "lr", "momentum"])
@given(values=st.lists(CELLS, max_size=12))
def test_a_column_is_judged_at_once_as_it_is_value_by_value(column: str, values: list) -> None:
    kind = column_kind(column)
    assert kind is not None
    assert kind.all_ok(values) == all(kind.ok(v) for v in values)


def test_an_integer_no_float_can_hold_is_no_finite_number() -> None:
    loss = column_kind("test_loss")
    assert loss is not None and not loss.all_ok([1.5, int("1" * 400)])
    step = column_kind("step")
    assert step is not None and step.all_ok([1, int("1" * 400)])
