"""`lrbench verify`: train a finished run again from its spec.json and compare the numbers.

Results repeat exactly on one machine type: the same spec, threads, torch and data give the
same bits. Across machines the CPU's instruction set (AVX-512 or AVX2: torch dispatches other
kernels), the image decoder (Pillow and its libjpeg) and library versions change float
rounding, and a few epochs amplify it. Verifying retrains the run into a temporary folder with
the recorded device, precision and threads, compares every metrics.csv value (timings
aside), and names the provenance that differs between the recording and this machine.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lrbench.errors import UserError
from lrbench.results import RunDir
from lrbench.specs import RunSpec

# provenance a retrained run is compared on: what can change its float rounding
COMPARED_PROVENANCE = (
    "cpu",
    "cpu_capability",
    "threads",
    "device",
    "precision",
    "torch",
    "numpy",
    "pillow",
    "libjpeg",
)


@dataclass
class Verification:
    """How a retrained run compares with the recorded one."""

    run_id: str
    rows: int  # epochs compared
    columns: list[str]
    largest: float  # the largest absolute difference over every compared value (NaN == NaN)
    by_column: dict[str, float] = field(default_factory=dict)
    row_counts: tuple[int, int] = (0, 0)  # (recorded, retrained) metrics.csv rows
    provenance: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # recorded, now

    @property
    def identical(self) -> bool:
        return self.largest == 0 and self.row_counts[0] == self.row_counts[1]


def verify_run(run_dir: Path, data_dir: str | None = None) -> Verification:
    """Retrain the run in `run_dir` from its spec.json into a temporary folder and compare."""
    from lrbench.train import Runtime, train_run

    run = RunDir(Path(run_dir))
    stored = _read_spec(run)
    try:
        spec = RunSpec.model_validate({k: stored[k] for k in RunSpec.model_fields if k in stored})
    except ValidationError as err:
        raise UserError(f"{run.spec}: not a spec this version can train ({_first(err)})") from None
    if not run.metrics.is_file():
        raise UserError(f"{run.metrics}: missing; there is nothing recorded to compare with")
    recorded = run.read_metrics()
    given = stored.get("provenance") if isinstance(stored.get("provenance"), dict) else {}
    runtime = Runtime(
        device=str(given.get("device") or "auto"),
        precision=str(given.get("precision") or "auto"),
        threads=given.get("threads") if isinstance(given.get("threads"), int) else None,
        data_dir=data_dir,
        import_paths=(str(Path.cwd()),),
    )
    with tempfile.TemporaryDirectory(prefix="lrbench-verify-") as tmp:
        again = RunDir(Path(tmp) / run.path.name)
        again.path.mkdir()
        train_run(spec, again.path, runtime)
        retrained = again.read_metrics()
        now = json.loads(again.spec.read_text()).get("provenance", {})
    columns = [c for c in recorded.header if c in retrained.header and not c.endswith("_time_s")]
    by_column = {c: 0.0 for c in columns}
    for old, new in zip(recorded.rows, retrained.rows, strict=False):
        for c in columns:
            by_column[c] = max(by_column[c], _difference(old.get(c), new.get(c)))
    return Verification(
        run_id=str(stored.get("run_id") or run.path.name),
        rows=min(len(recorded.rows), len(retrained.rows)),
        columns=columns,
        largest=max(by_column.values(), default=0.0),
        by_column={c: d for c, d in by_column.items() if d != 0},
        row_counts=(len(recorded.rows), len(retrained.rows)),
        provenance={
            k: (given.get(k), now.get(k))
            for k in COMPARED_PROVENANCE
            if given.get(k) is not None and given.get(k) != now.get(k)
        },
    )


def _read_spec(run: RunDir) -> dict[str, Any]:
    try:
        stored = json.loads(run.spec.read_text())
    except FileNotFoundError:
        raise UserError(f"{run.path}: no spec.json (is it a run folder?)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{run.spec}: not readable JSON ({err})") from None
    if not isinstance(stored, dict):
        raise UserError(f"{run.spec}: not a JSON object")
    return stored


def _first(err: ValidationError) -> str:
    e = err.errors()[0]
    return f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"


def _difference(old: Any, new: Any) -> float:
    """|old - new| for two metrics.csv fields; 0 for equal texts and for NaN against NaN,
    inf when one is empty or not a number and the other is."""
    if old == new:
        return 0.0
    try:
        a, b = float(old), float(new)
    except (TypeError, ValueError):
        return math.inf
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b)
