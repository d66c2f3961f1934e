"""One training, one result: copies of a run found in several folders count once.

The same sweep copied to a second folder (or reported from two results roots) holds every run
twice. Counting both would make three seeds look like six: intervals shrink and P(top-1)
sharpens on copies. So after loading, runs are grouped by what they trained: the same run id,
or specs equal in all but what cannot change the numbers (sweep name, provenance; the same
seed, lr, schedule, budget and setup), as when one config ran under two sweep names. Seeds of
a row are distinct seeds, always. Copies whose results agree
(status and every metrics.csv value, timings aside: a rerun on the same machine repeats the
numbers but not the seconds) are one run, the first folder's kept. Copies that disagree are
left out, all of them, and named: neither is averaged in silently, and which is right is for
the reader to decide.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from lrbench.report.problems import NOTE, Problem, common_parent
from lrbench.results import RunDir


def one_result_per_run_id(
    runs: pd.DataFrame, counted: Collection[str]
) -> tuple[pd.DataFrame, list[Problem]]:
    """`runs` with each training whose status is in `counted` once; copies noted, disagreeing
    copies skipped and named."""
    ranked = runs[runs["status"].isin(counted)]
    repeated = ranked[ranked.duplicated(TRAINING, keep=False)]
    problems: list[Problem] = []
    if repeated.empty:
        return runs, problems
    dropped: list[str] = []
    same: dict[tuple[str, ...], list[str]] = {}  # folders holding copies -> their run ids
    for _, copies in repeated.groupby(TRAINING, sort=True):
        paths = list(copies["path"])
        run_id = " = ".join(sorted(set(copies["run_id"])))
        results = {_result(p, s) for p, s in zip(paths, copies["status"], strict=True)}
        if len(results) == 1:
            dropped += paths[1:]
            same.setdefault(tuple(_folder(p) for p in paths), []).append(run_id)
        else:
            dropped += paths
            problems.append(
                Problem(
                    common_parent(paths),
                    f"run {run_id} is in {len(paths)} folders ({', '.join(map(_folder, paths))}) "
                    "with different results: none of them counted (keep the copy you trust, or "
                    "report the folders apart)",
                    runs=len(paths),
                )
            )
    for folders, run_ids in same.items():
        problems.append(
            Problem(
                folders[0],
                f"{len(run_ids)} run(s) are in each of {', '.join(folders)} with the same results: "
                f"each counted once, as one seed (from {folders[0]})",
                NOTE,
            )
        )
    return runs[~runs["path"].isin(dropped)].reset_index(drop=True), problems


# what a run trained: equal in these, two runs are the same training (load.py's columns)
TRAINING = ["setup_key", "dataset", "model", "optimizer", "lr", "schedule_params", "budget", "seed"]


def _result(path: str, status: str) -> tuple:
    """What a copy's result is: its status and its metrics.csv rows without timing columns."""
    found = RunDir(Path(path)).read_metrics()
    frame = pd.DataFrame(found.rows, columns=found.header)
    kept = [c for c in frame.columns if not _is_timing(c)]
    return (status, tuple(kept), tuple(map(tuple, frame[kept].astype(str).to_numpy())))


def _is_timing(column: str) -> bool:
    return column.endswith("_time_s")


def _folder(path: str) -> str:
    """The sweep folder holding a run (runs/<id> stripped)."""
    return os.path.dirname(os.path.dirname(path)) or path
