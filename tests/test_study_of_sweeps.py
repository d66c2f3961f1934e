"""A study larger than one sweep is several sweeps: split by seeds and reported together, it
reads exactly as the one sweep would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from sweepconfigs import tiny, write_config

from lrbench.config import parse_config
from lrbench.sweep.plan import write_sweep_files

pytestmark = pytest.mark.slow  # trains 8 tiny runs


def test_a_study_split_by_seeds_reports_as_one_sweep(cli, tmp_path, one_thread):
    results = tmp_path / "results"
    for name, seeds in (("part-a", [0]), ("part-b", [1])):
        folder = tmp_path / name
        folder.mkdir()
        config = write_config(folder, name=name, seeds=seeds)
        done = cli("sweep", config, "--results", results, "--device", "cpu")
        assert done.code == 0, done.output
    whole = write_sweep_files(parse_config(tiny(name="whole", seeds=[0, 1])), tmp_path / "one")
    for part in ("part-a", "part-b"):  # the same runs, as one sweep would have written them
        for run in (results / part / "runs").iterdir():
            shutil.copytree(run, whole / "runs" / run.name)

    status = cli("status", results)
    assert status.code == 0 and "part-a" in status.out and "part-b" in status.out
    together = cli("report", results, "--out", tmp_path / "together")
    alone = cli("report", whole, "--out", tmp_path / "alone")
    assert together.code == 0 and alone.code == 0, together.output + alone.output
    assert _summary(tmp_path / "together").equals(_summary(tmp_path / "alone"))


def _summary(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "summary.csv")
    return table[[c for c in table.columns if "sweep" not in c and "path" not in c]]
