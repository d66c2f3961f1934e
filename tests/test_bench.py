"""`lrbench bench`: the JSON object docs/design.md documents, the table, and clear errors."""

from __future__ import annotations

import json

import pytest

import lrbench.cli.bench_cmd  # noqa: F401  (registers `bench` where lrbench.cli does not yet)
from lrbench.cli.bench_cmd import parse_packs
from lrbench.errors import UserError
from lrbench.tools.bench import JSON_KEYS, run_bench

TINY = ["--model", "resnet8", "--device", "cpu", "--steps", "1", "--warmup", "0", "--rounds", "1",
        "--batch-size", "16", "--workers", "0"]  # fmt: skip


def test_json_is_exactly_the_documented_object(cli):
    result = cli("bench", *TINY, "--pack", "2", "3", "--no-variants", "--json")
    assert result.code == 0, result.output
    report = json.loads(result.out)
    assert list(report) == ["device", "model", "batch_size", "results"]
    assert report["model"] == "resnet8" and report["batch_size"] == 16
    assert report["device"].startswith("cpu")
    rows = report["results"]
    assert [(r["mode"], r["pack"]) for r in rows] == [
        ("baseline", 1), ("single", 1), ("packed", 2), ("packed", 3)
    ]  # fmt: skip
    for r in rows:
        assert tuple(r) == JSON_KEYS
        assert r["images_per_s"] > 0
        assert r["model_epochs_per_s"] == pytest.approx(r["images_per_s"] / 50_000)
    base = rows[0]["model_epochs_per_s"]
    for r in rows:
        assert r["ratio_to_baseline"] == pytest.approx(r["model_epochs_per_s"] / base)


def test_cpu_variants_show_in_the_table_but_stay_out_of_the_json(capsys):
    from lrbench.cli.bench_cmd import _print_table

    report = run_bench("resnet8", "cpu", [2], steps=1, warmup=0, batch_size=8, variants=True, rounds=1,
                       workers=0)  # fmt: skip
    configs = [r.config for r in report.rows if r.mode == "single"]
    assert len(configs) == 4  # fp32/bf16 x channels_last/NCHW, train.py's choice first
    assert configs[0].startswith("fp32 channels_last")
    assert [r["mode"] for r in report.to_json()["results"]] == ["baseline", "single", "packed"]
    _print_table(report)
    table = capsys.readouterr().out
    for text in ("baseline", "DataLoader", "bf16 NCHW", "fp32 channels_last", "x baseline"):
        assert text in table, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pack", "0"], "--pack"),
        (["--pack", "x"], "--pack"),
        (["--data", "/nonexistent/cifar"], "/nonexistent/cifar"),
        (["--model", "resnet21"], "21"),
        (["--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_options_are_one_line_and_exit_two(cli, args, message):
    result = cli("bench", *TINY, *args)
    assert result.code == 2, result.output
    assert message in result.err
    assert "Traceback" not in result.output


def test_pack_sizes_may_be_spaced_repeated_or_comma_separated():
    assert parse_packs(["8", "32,64"]) == [8, 32, 64]
    with pytest.raises(UserError):
        parse_packs(["-1"])


def test_each_row_shows_its_spread_over_rounds_and_progress_inside_a_round():
    said: list[str] = []
    report = run_bench("resnet8", "cpu", [2], steps=1, warmup=0, batch_size=8, variants=False,
                       rounds=3, workers=0, log=said.append)  # fmt: skip
    for row in report.rows:
        assert len(row.per_round) == 3
        low, median, high = row.ratio_spread
        assert low <= median <= high
    assert report.rows[0].ratio_spread == (1.0, 1.0, 1.0)  # the baseline against itself
    rows = len(report.rows)
    inside = [m for m in said if m.startswith("round ")]
    assert len(inside) == 3 * rows and inside[-1].startswith(f"round 3 of 3, row {rows} of {rows}")


def test_the_usage_line_names_the_options(cli):
    result = cli("bench", "--help")
    assert "Usage: lrbench bench [OPTIONS]" in " ".join(result.out.split())
    assert "[]" not in result.out
