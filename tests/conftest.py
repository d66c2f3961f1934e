"""Shared fixtures: the CLI as a user runs it, in-process; one torch thread for tiny models;
a folder for the user's own modules."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import lrbench.imports
from lrbench.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys):
    """Run `lrbench ARGS...` through the real entry point; return exit code, stdout, stderr."""

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as ex:
            code = ex.code if isinstance(ex.code, int) else (0 if ex.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster, and much faster when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def user_code(tmp_path, monkeypatch) -> Path:
    """A folder for modules a test writes and imports by path; sys.path, lrbench's search
    folders and the imported modules are as before once the test ends."""
    folder = tmp_path / "user"
    folder.mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(lrbench.imports, "_SEARCH", [])
    importlib.invalidate_caches()
    yield folder
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
