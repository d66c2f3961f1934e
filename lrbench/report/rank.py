"""Cells, learning-rate choice, ranking and finishes: the REX paper's finish-table rule.

A cell is (dataset, model, optimizer, budget). Within a cell a schedule's score is the mean
over seeds of each run's last test accuracy. One schedule is strictly better than another when
it has fewer diverged seeds, or as many and a strictly higher mean over its finished seeds.
With no divergence that is exactly "a strictly higher mean". Rank = 1 + the number of
schedules strictly better; top-1 means rank 1 (ties all count), top-3 means rank <= 3.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable

import pandas as pd

from lrbench.report.load import RANKED
from lrbench.report.problems import NOTE, Problem

SETTING = ["dataset", "model", "optimizer"]
CELL = [*SETTING, "budget"]
LOW_HIGH_SPLIT = 0.25
SUMMARY_COLUMNS = [
    *CELL,
    "schedule",
    "n",
    "mean_test_acc",
    "std_test_acc",
    "rank",
    "top1",
    "top3",
    "lr",
    "lr_grid",
    "n_diverged",
    "seeds",
    "epochs",
    "n_stopped_early",
    "mean_ensemble_test_acc",
    "std_ensemble_test_acc",
    "ensemble_size",
]
RANK_COLUMNS = ("rank", "top1", "top3")
FINISH_COLUMNS = [
    "schedule",
    "cells",
    "low_top1",
    "low_top3",
    "high_top1",
    "high_top3",
    "top1",
    "top3",
]


def exact_mean(values: Iterable[float]) -> float:
    """Mean via fsum: the same seeds in any order give the same float, so ties stay ties."""
    vals = list(values)
    return math.fsum(vals) / len(vals) if vals else math.nan


def sample_std(values: Iterable[float]) -> float:
    """Sample standard deviation (ddof=1); NaN with fewer than two values."""
    vals = list(values)
    return statistics.stdev(vals) if len(vals) >= 2 else math.nan


def order_key(n_diverged: int, mean: float) -> tuple[int, float]:
    """Smaller is better: fewer diverged seeds first, then a higher mean of the finished ones."""
    return (n_diverged, -mean if math.isfinite(mean) else math.inf)


def is_low(budget: float) -> bool:
    return budget < LOW_HIGH_SPLIT


def describe_cell(dataset: str, model: str, optimizer: str, budget: float, schedule: str) -> str:
    return f"{dataset}/{model}/{optimizer} budget {budget:g}, schedule {schedule}"


def choose_lr(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Keep, per (cell, schedule), the runs of one learning rate.

    With a grid (several rates) the rate with the best mean final val_acc wins, ordered like
    schedules are (fewer diverged seeds first); a tie goes to the smaller rate. Test accuracy is
    never used to choose: a grid whose finished runs lack val_acc is left out and listed.
    """
    ranked = runs[runs["status"].isin(RANKED)]
    kept: list[pd.DataFrame] = []
    problems: list[Problem] = []
    for key, group in ranked.groupby([*CELL, "schedule"], sort=True):
        rates = sorted(group["lr"].unique())
        group = group.assign(lr_grid=" ".join(f"{r:g}" for r in rates))
        if len(rates) == 1:
            kept.append(group)
            continue
        finished = group[group["status"] == "done"]
        no_val = finished[finished["val_score"].isna()]
        if len(no_val):
            problems.append(
                Problem(
                    no_val["path"].iloc[0],
                    f"lr grid {{{', '.join(f'{r:g}' for r in rates)}}} for "
                    f"{describe_cell(*key)} but {len(no_val)} finished run(s) have no val_acc; "
                    "a rate is never chosen on test, so this schedule is left out of this cell",
                )
            )
            continue
        best = min(rates, key=lambda r: (*_lr_key(group[group["lr"] == r]), r))
        kept.append(group[group["lr"] == best])
    chosen = pd.concat(kept) if kept else ranked.assign(lr_grid="")
    return chosen, problems


def _lr_key(runs: pd.DataFrame) -> tuple[int, float]:
    finished = runs[runs["status"] == "done"]
    return order_key(int((runs["status"] == "diverged").sum()), exact_mean(finished["val_score"]))


def summarize(chosen: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, schedule) with mean, std, rank, top-1 and top-3 (summary.csv)."""
    rows = []
    for key, group in chosen.groupby([*CELL, "schedule"], sort=True):
        finished = group[group["status"] == "done"]["score"]
        rows.append(
            {
                **dict(zip([*CELL, "schedule"], key, strict=True)),
                "n": len(group),
                "mean_test_acc": exact_mean(finished),
                "std_test_acc": sample_std(finished),
                "lr": float(group["lr"].iloc[0]),
                "lr_grid": group["lr_grid"].iloc[0],
                "n_diverged": int((group["status"] == "diverged").sum()),
                "seeds": " ".join(str(s) for s in sorted(group["seed"])),
                "epochs": int(group["epochs"].max()),
                "n_stopped_early": int(group["stopped_early"].fillna(False).astype(bool).sum()),
                **_ensemble(group[group["status"] == "done"]),
            }
        )
    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c not in RANK_COLUMNS])
    ranks: dict[int, int] = {}
    for _, cell in summary.groupby(CELL, sort=False):
        keys = {
            i: order_key(d, m)
            for i, d, m in zip(cell.index, cell["n_diverged"], cell["mean_test_acc"], strict=True)
        }
        for i, k in keys.items():
            ranks[i] = 1 + sum(other < k for other in keys.values())
    summary["rank"] = pd.Series(ranks, dtype="int64")
    summary["top1"] = summary["rank"] == 1
    summary["top3"] = summary["rank"] <= 3
    return summary[SUMMARY_COLUMNS]


def _ensemble(done: pd.DataFrame) -> dict[str, float]:
    """Snapshot-ensemble accuracy over the finished runs that recorded one (NaN if none).

    Runs without ensemble columns are left out of the mean rather than counted as zero.
    """
    scores = [float(v) for v in done["ensemble_score"] if math.isfinite(float(v))]
    sizes = [float(v) for v in done["ensemble_size"] if math.isfinite(float(v))]
    return {
        "mean_ensemble_test_acc": exact_mean(scores),
        "std_ensemble_test_acc": sample_std(scores),
        "ensemble_size": max(sizes) if sizes else math.nan,
    }


def finishes(summary: pd.DataFrame) -> pd.DataFrame:
    """Per schedule, the percentage of its cells where it finished top-1 and top-3."""
    rows = []
    for schedule, group in summary.groupby("schedule", sort=True):
        low = group[group["budget"].map(is_low)]
        high = group[~group["budget"].map(is_low)]
        rows.append(
            {
                "schedule": schedule,
                "cells": len(group),
                "low_top1": _percent(low["top1"]),
                "low_top3": _percent(low["top3"]),
                "high_top1": _percent(high["top1"]),
                "high_top3": _percent(high["top3"]),
                "top1": _percent(group["top1"]),
                "top3": _percent(group["top3"]),
            }
        )
    table = pd.DataFrame(rows, columns=FINISH_COLUMNS)
    return table.sort_values(
        ["top1", "top3", "schedule"], ascending=[False, False, True], na_position="last"
    ).reset_index(drop=True)


def _percent(flags: pd.Series) -> float:
    """NaN when the schedule took part in no such cell: 0% would claim it lost them."""
    return round(100.0 * float(flags.sum()) / len(flags), 2) if len(flags) else math.nan


def notes(runs: pd.DataFrame, chosen: pd.DataFrame) -> list[Problem]:
    """What the reader should know about numbers that are in the tables."""
    return [
        *_missing_seeds(runs, chosen),
        *_duplicate_seeds(chosen),
        *_label_clashes(runs),
        *_stopped_early(chosen),
    ]


def _stopped_early(chosen: pd.DataFrame) -> list[Problem]:
    """Runs that early stopping ended before their budget: ranked on their last epoch."""
    out = []
    stopped = chosen[chosen["stopped_early"].fillna(False).astype(bool)]
    sizes = chosen.groupby([*CELL, "schedule"]).size()
    for key, group in stopped.groupby([*CELL, "schedule"], sort=True):
        total = int(sizes[key])
        at = [
            f"seed {seed} at epoch {int(e)}" if math.isfinite(float(e)) else f"seed {seed}"
            for seed, e in zip(group["seed"], group["stopped_epoch"], strict=True)
        ]
        out.append(
            Problem(
                _common_parent(group["path"]),
                f"{describe_cell(*key)}: {len(group)} of {total} run(s) stopped early "
                f"({', '.join(at)} of {int(group['epochs'].max())}); their last metrics count "
                "as they stand",
                NOTE,
            )
        )
    return out


def _missing_seeds(runs: pd.DataFrame, chosen: pd.DataFrame) -> list[Problem]:
    """A (cell, schedule) with fewer seeds than its cell ran (skipped runs included)."""
    out = []
    expected = runs.groupby(CELL)["seed"].agg(lambda s: sorted(set(s)))
    for key, group in chosen.groupby([*CELL, "schedule"], sort=True):
        want = expected[key[:-1]]
        have = sorted(set(group["seed"]))
        missing = [s for s in want if s not in have]
        if missing:
            out.append(
                Problem(
                    _common_parent(group["path"]),
                    f"{describe_cell(*key)}: mean over seeds {_ints(have)} only, "
                    f"seeds {_ints(missing)} missing",
                    NOTE,
                )
            )
    return out


def _duplicate_seeds(chosen: pd.DataFrame) -> list[Problem]:
    out = []
    for key, group in chosen.groupby([*CELL, "schedule", "seed"], sort=True):
        if len(group) > 1:
            out.append(
                Problem(
                    _common_parent(group["path"]),
                    f"{describe_cell(*key[:-1])}: seed {key[-1]} has {len(group)} runs "
                    f"({', '.join(os.path.basename(p) for p in group['path'])}); all counted",
                    NOTE,
                )
            )
    return out


def _label_clashes(runs: pd.DataFrame) -> list[Problem]:
    """One label, several parameter sets (e.g. two sweeps' "rex"): they are pooled by label."""
    out = []
    for label, group in runs.groupby("schedule", sort=True):
        params = group.drop_duplicates("schedule_params")
        if len(params) > 1:
            shown = "; ".join(params["schedule_params"])
            out.append(
                Problem(
                    _common_parent(group["path"]),
                    f"schedule label {label!r} is used with {len(params)} parameter sets, "
                    f"pooled as one schedule: {shown}",
                    NOTE,
                )
            )
    return out


def _ints(values: Iterable[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def _common_parent(paths: Iterable[str]) -> str:
    return os.path.commonpath(list(paths))
