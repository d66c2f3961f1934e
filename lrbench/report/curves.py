"""Every run's per-epoch rows in one frame: the report's memory grows with the epochs read, by
the few columns it uses, and never holds a DataFrame per run.

`Curves.frame` has one row per (run, epoch), runs contiguous and in the order read:

| column | holds |
|---|---|
| `path` | the run's folder (categorical: one copy of each path) |
| `epoch` | 1-based, as metrics.csv numbers it |
| `lr` | the rate of the epoch's last step |
| `score` | the run's metric (its spec.json `metric`) as a score: higher is better |
| `epoch_time_s` | seconds of the epoch, evaluation included (NaN where not recorded) |

Code that works on all runs at once (anytime, the per-epoch figures) groups `frame`; code that
wants one run reads `curves[path]`, a slice of it without `path`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lrbench.report.metric import Metric

COLUMNS = ["epoch", "lr", "score", "epoch_time_s"]
NAN = math.nan


class Curves(Mapping[str, pd.DataFrame]):
    """The per-epoch rows of every run that has any, as one frame; a mapping path -> rows."""

    def __init__(self, frame: pd.DataFrame, spans: dict[str, tuple[int, int]]) -> None:
        self.frame = frame
        self._spans = spans

    @classmethod
    def empty(cls) -> Curves:
        return CurveBuilder().build()

    def __getitem__(self, path: str) -> pd.DataFrame:
        start, stop = self._spans[path]
        return self.frame.iloc[start:stop][COLUMNS].reset_index(drop=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)

    def __contains__(self, path: object) -> bool:
        return path in self._spans

    def without(self, paths: Collection[str]) -> Curves:
        """The same curves less those of `paths` (copies of a run read once)."""
        gone = set(paths) & set(self._spans)
        if not gone:
            return self
        frame = self.frame[~self.frame["path"].isin(gone).to_numpy()].reset_index(drop=True)
        frame["path"] = frame["path"].cat.remove_categories(sorted(gone))
        spans, start = {}, 0
        for path, (a, b) in self._spans.items():
            if path not in gone:
                spans[path] = (start, start + b - a)
                start += b - a
        return Curves(frame, spans)

    def of(self, paths: Sequence[str] | pd.Series) -> pd.DataFrame:
        """The rows of the given runs (those with rows), `path` included, in one frame."""
        keep = self.frame["path"].isin(set(paths))
        return self.frame[keep.to_numpy()]


class CurveBuilder:
    """Collects rows run by run in flat typed arrays (8 bytes a value) and makes one frame."""

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._lengths: list[int] = []
        self._epoch = array("l")
        self._values = {c: array("d") for c in COLUMNS[1:]}

    def add(self, path: str, rows: Sequence[dict[str, Any]], metric: Metric) -> None:
        """A run's whole metrics.csv rows (lrbench.runfiles.read_metrics); fields that are not
        numbers become NaN. A run without rows adds nothing."""
        if not rows:
            return
        self._paths.append(path)
        self._lengths.append(len(rows))
        column = metric.column
        lr, score, seconds = self._values["lr"], self._values["score"], self._values["epoch_time_s"]
        for row in rows:
            self._epoch.append(int(row["epoch"]))
            lr.append(number(row.get("lr")))
            value = number(row.get(column))
            score.append(metric.score(value))
            seconds.append(number(row.get("epoch_time_s")))

    @classmethod
    def joined(cls, parts: Sequence[CurveBuilder]) -> CurveBuilder:
        """The rows of several builders, one after another (runs read in shares)."""
        if len(parts) == 1:
            return parts[0]
        whole = cls()
        for part in parts:
            whole._paths += part._paths
            whole._lengths += part._lengths
            whole._epoch += part._epoch
            for column, values in whole._values.items():
                values += part._values[column]
        return whole

    def build(self) -> Curves:
        lengths = np.asarray(self._lengths, dtype=np.int64)
        ends = np.cumsum(lengths)
        spans = {
            p: (int(e - n), int(e)) for p, n, e in zip(self._paths, lengths, ends, strict=True)
        }
        codes = np.repeat(np.arange(len(self._paths)), lengths)
        path = pd.Categorical.from_codes(codes, categories=pd.Index(self._paths, dtype=object))
        frame = pd.DataFrame(
            {
                "path": path,
                "epoch": np.frombuffer(self._epoch, dtype=np.int64)
                if len(self._epoch)
                else np.zeros(0, dtype=np.int64),
                **{
                    c: np.frombuffer(v, dtype=np.float64) if len(v) else np.zeros(0)
                    for c, v in self._values.items()
                },
            }
        )
        return Curves(frame, spans)


def number(value: Any) -> float:
    """A metrics.csv field as lrbench.runfiles.read_metrics parsed it: a number, else NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return NAN
