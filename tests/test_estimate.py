"""A dry run estimates a sweep that has never run, from a short calibration on the device it
will use, marked as such and in hours; the calibration is kept and reused."""

from __future__ import annotations

import re

import pytest
import torch
from sweepconfigs import write_config


@pytest.fixture(autouse=True)
def data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "data"))


@pytest.fixture
def timed(monkeypatch):
    """How many calibrations built a training step."""
    import lrbench.train.probe

    built = []
    real = lrbench.train.probe.probe_step
    monkeypatch.setattr(
        lrbench.train.probe, "probe_step", lambda *a, **k: built.append(a) or real(*a, **k)
    )
    return built


def test_a_never_run_sweep_gets_a_calibrated_estimate_in_hours(cli, tmp_path, timed):
    config = write_config(tmp_path)
    dry = cli("sweep", config, "--results", tmp_path / "r", "--dry-run", "--device", "cpu")
    assert dry.code == 0, dry.output
    line = " ".join(dry.out.split())
    found = re.search(r"6 epochs to train; estimated ([\d,.]+) h \(calibrated: .* on cpu", line)
    assert found, line
    assert float(found.group(1).replace(",", "")) > 0
    assert len(timed) == 1  # one model and batch size: one calibration
    again = cli("sweep", config, "--results", tmp_path / "r", "--dry-run", "--device", "cpu")
    assert again.code == 0 and "calibrated" in again.out
    assert len(timed) == 1  # kept in the data cache folder


def test_the_calibration_is_positive(tmp_path):
    from lrbench.config import load_config
    from lrbench.sweep import Sweep, SweepOptions
    from lrbench.sweep.estimate import estimate

    sweep = Sweep(load_config(write_config(tmp_path)), SweepOptions(results=tmp_path / "r"))
    est = estimate(sweep, 1)
    assert est.calibrated and est.seconds > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_no_estimate_for_a_gpu_this_machine_does_not_have(cli, tmp_path):
    config = write_config(tmp_path)
    dry = cli("sweep", config, "--results", tmp_path / "r", "--dry-run", "--device", "cuda")
    assert dry.code == 0, dry.output
    assert "estimate unknown (cannot estimate here" in " ".join(dry.out.split())
