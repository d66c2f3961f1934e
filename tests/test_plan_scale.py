"""A plan's cost grows linearly with its runs: the dry run of a sweep hashes each run's id once,
compares no specs with each other, and asks the file system nothing about runs never started.
Counted in operations, not seconds."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel
from sweepconfigs import write_config

from lrbench.specs import RunSpec


@pytest.fixture
def counted(monkeypatch):
    """How often each costly operation ran."""
    calls: Counter[str] = Counter()

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(RunSpec, "digest", counting("digest", RunSpec.digest))
    monkeypatch.setattr(BaseModel, "__eq__", counting("__eq__", BaseModel.__eq__))
    monkeypatch.setattr(os, "stat", counting("stat", os.stat))
    return calls


def _dry_run(cli, tmp_path: Path, seeds: int) -> int:
    tmp_path.mkdir(exist_ok=True)
    config = write_config(tmp_path, seeds=seeds)
    result = cli("sweep", config, "--results", tmp_path / "results", "--dry-run")
    assert result.code == 0, result.output
    return 4 * seeds


@pytest.mark.parametrize("seeds", [4, 16])
def test_a_dry_run_hashes_each_id_once_and_compares_no_specs(cli, tmp_path, counted, seeds):
    runs = _dry_run(cli, tmp_path, seeds)
    assert counted["digest"] == runs
    assert counted["__eq__"] == 0


def test_a_fresh_plan_costs_no_file_system_calls_per_run(cli, tmp_path, counted):
    _dry_run(cli, tmp_path / "small", 4)
    small = counted["stat"]
    counted.clear()
    _dry_run(cli, tmp_path / "large", 16)
    assert counted["stat"] == small
