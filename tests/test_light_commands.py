"""Commands that only read or print answer at once: they never import torch (seconds of import
on a small machine) nor the training stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "results" / "demo"

CHECK = """
import contextlib, io, sys
from lrbench.cli import main
for argv in {commands!r}:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit as ex:
            assert not ex.code, (argv, ex.code)
    heavy = sorted(m for m in ("torch", "torchvision", "lrbench.train", "lrbench.data") if m in sys.modules)
    assert not heavy, f"lrbench {{' '.join(argv)}} imported {{heavy}}"
"""


def _light(commands: list[list[str]]) -> subprocess.CompletedProcess:
    code = CHECK.format(commands=commands)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def test_help_schedules_and_a_schedule_table_import_no_torch() -> None:
    done = _light(
        [
            ["--help"],
            ["sweep", "--help"],
            ["schedules"],
            ["schedule", "rex", "--steps", "100", "--format", "table"],
        ]
    )
    assert done.returncode == 0, done.stderr


def test_status_and_report_import_no_torch(tmp_path: Path) -> None:
    out = tmp_path / "report"
    done = _light([["status", str(DEMO)], ["report", str(DEMO), "--out", str(out)]])
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").is_file()


def test_reading_runs_imports_neither_scipy_nor_matplotlib() -> None:
    """A report reads its runs before the seconds of importing scipy and matplotlib, which
    then overlap the work of the forked workers."""
    code = (
        "import sys\nfrom lrbench.report import choose\n"
        f"choose([{str(DEMO)!r}], workers=2)\n"
        "heavy = sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
