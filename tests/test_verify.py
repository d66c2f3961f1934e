"""Reproducibility stated exactly: provenance names what changes float rounding across machines,
the report notes seeds that ran under different ones, and `lrbench verify` retrains a run."""

from __future__ import annotations

from pathlib import Path

import helpers
import pytest
import torch
from runfolders import write_run

from lrbench.report import analyse
from lrbench.specs import DatasetSpec
from lrbench.train import Runtime, train_run
from lrbench.train.runtime import provenance


def _tiny(out: Path) -> Path:
    spec = helpers.spec(
        dataset=DatasetSpec(name="synthetic", limit_train=64),
        schedule={"name": "linear", "label": "linear"},
        full_epochs=1,
        epochs=1,
    )
    run = out / spec.run_id
    run.mkdir(parents=True)
    train_run(spec, run, Runtime(device="cpu", threads=1))
    return run


def test_provenance_records_instruction_set_decoder_and_numpy() -> None:
    found = provenance(torch.device("cpu"), "fp32")
    assert found["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert found["pillow"] and found["libjpeg"] and found["numpy"]


def test_seeds_run_under_different_instruction_sets_are_noted(tmp_path: Path) -> None:
    write_run(tmp_path, seed=1, spec={"provenance": {"cpu_capability": "AVX512"}})
    write_run(tmp_path, seed=2, spec={"provenance": {"cpu_capability": "AVX2"}})
    notes = [p.reason for p in analyse([tmp_path]).problems]
    assert any("different cpu_capability {AVX2, AVX512}" in n for n in notes)


@pytest.mark.slow
def test_verify_on_a_fresh_run_prints_zero(tmp_path: Path, cli) -> None:
    run = _tiny(tmp_path)
    result = cli("verify", run)
    assert result.code == 0, result.err
    assert "largest difference from the recorded metrics: 0 (1 epochs x" in result.out


@pytest.mark.slow
def test_verify_names_a_difference_and_exits_1(tmp_path: Path, cli) -> None:
    run = _tiny(tmp_path)
    lines = (run / "metrics.csv").read_text().splitlines()
    head, row = lines[0].split(","), lines[1].split(",")
    at = head.index("test_acc")
    row[at] = repr(float(row[at]) + 0.25)
    (run / "metrics.csv").write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    result = cli("verify", run)
    assert result.code == 1
    assert "largest difference from the recorded metrics: 0.25" in result.out
    assert "  test_acc: 0.25" in result.out


def test_verify_of_a_folder_without_a_run_is_one_line(tmp_path: Path, cli) -> None:
    result = cli("verify", tmp_path)
    assert result.code == 2 and "no spec.json" in result.err and result.err.count("\n") == 1
