"""metrics.csv is read field by field as the csv module reads it, whether a line takes the
direct path (no quotes, the trainer's lines) or the csv module's (quoted fields)."""

from __future__ import annotations

from pathlib import Path

from lrbench.runfiles import read_metrics


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
