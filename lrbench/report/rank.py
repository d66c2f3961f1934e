"""Cells, learning-rate choice, ranking and finishes: the REX paper's finish-table rule.

A cell is (dataset, model, optimizer, budget), within one setup (variants.py: runs whose specs
differ in more than the seed, lr and schedule are never compared). A row is a schedule label
and its variant in a cell. Within a cell a row's score is the mean over seeds of each run's
last score: its metric (metric.py) oriented so that higher is better, an accuracy fraction or
a negated loss. The summary's `mean_test_acc`, `std_test_acc`, `ci_*_test_acc` hold that score
whatever the metric; summary.csv shows them only for accuracy-based rows and gives every row
`mean`, `std`, `ci_low`, `ci_high` in its own metric. One schedule is strictly better than
another when it has fewer diverged seeds, or as many and a strictly higher mean over its
finished seeds.
With no divergence that is exactly "a strictly higher mean". Rank = 1 + the number of
schedules strictly better; top-1 means rank 1 (ties all count), top-3 means rank <= 3.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable

import pandas as pd

from lrbench.report.load import NUMERIC_PROVENANCE, RANKED
from lrbench.report.metric import metric_named, rounded
from lrbench.report.problems import NOTE, Problem, common_parent
from lrbench.report.variants import SETTING, shown

CELL = [*SETTING, "budget"]
COMPARED = [*CELL, "setup"]  # the rows ranked against each other
ROW = [*COMPARED, "schedule", "schedule_variant", "variant"]
FINISH_ROW = ["schedule", "variant"]
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
# `interval`: how ci_low/ci_high were made: "t" (fewer than 5 finished seeds), "bootstrap"
UNCERTAINTY_COLUMNS = ["ci_low_test_acc", "ci_high_test_acc", "p_top1", "p_top3", "interval"]
SHOWN_COLUMNS = ["metric", "mean", "std", "ci_low", "ci_high"]  # in each row's own metric
SUMMARY_CSV_COLUMNS = [
    *SUMMARY_COLUMNS,
    *UNCERTAINTY_COLUMNS[:-1],
    "variant",
    *SHOWN_COLUMNS,
    "interval",
]
ACCURACY_COLUMNS = [
    "mean_test_acc",
    "std_test_acc",
    "ci_low_test_acc",
    "ci_high_test_acc",
    "mean_ensemble_test_acc",
    "std_ensemble_test_acc",
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
EXPECTED_COLUMNS = [
    "expected_top1",
    "expected_top1_low",
    "expected_top1_high",
    "expected_top3",
    "expected_top3_low",
    "expected_top3_high",
]
FINISH_CSV_COLUMNS = [*FINISH_COLUMNS, *EXPECTED_COLUMNS, "variant"]


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


def describe_cell(key: tuple) -> str:
    """A cell (a key in CELL's or COMPARED's order) as problems.txt names it."""
    dataset, model, optimizer, budget, *setup = key
    where = f"{dataset}/{model}/{optimizer} budget {budget:g}"
    return f"{where} [{setup[0]}]" if setup and setup[0] else where


def describe_row(key: tuple) -> str:
    """A row (a key in ROW's order) as problems.txt names it."""
    row = dict(zip(ROW, key, strict=True))
    return f"{describe_cell(key[: len(CELL)])}, schedule {shown(row['schedule'], row['variant'])}"


def choose_lr(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Keep, per row, the runs of one learning rate.

    With a grid (several rates) the rate with the best mean final val_acc wins, ordered like
    schedules are (fewer diverged seeds first); a tie goes to the smaller rate. Test accuracy is
    never used to choose: a grid whose finished runs lack val_acc is left out and listed.
    """
    ranked = runs[runs["status"].isin(RANKED)]
    kept: list[pd.DataFrame] = []
    problems: list[Problem] = []
    for key, group in ranked.groupby(ROW, sort=True):
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
                    f"{describe_row(key)} but {len(no_val)} finished run(s) have no val_acc; "
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
    """One row per (cell, schedule, variant) with mean, std, rank, top-1 and top-3.

    The uncertainty columns come from uncertainty.paired_bootstrap, joined by analyse.
    """
    rows = []
    for key, group in chosen.groupby(ROW, sort=True):
        finished = group[group["status"] == "done"]["score"]
        rows.append(
            {
                **dict(zip(ROW, key, strict=True)),
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
                "metric": group["metric"].iloc[0] if "metric" in group else "error",
                **_length_and_data(group),
            }
        )
    columns = [
        *(c for c in SUMMARY_COLUMNS if c not in RANK_COLUMNS),
        *ROW[len(CELL) :],
        "metric",
        *LENGTH_AND_DATA,
    ]
    summary = pd.DataFrame(rows, columns=list(dict.fromkeys(columns)))
    ranks: dict[int, int] = {}
    for _, cell in summary.groupby(COMPARED, sort=False):
        keys = {
            i: order_key(d, m)
            for i, d, m in zip(cell.index, cell["n_diverged"], cell["mean_test_acc"], strict=True)
        }
        for i, k in keys.items():
            ranks[i] = 1 + sum(other < k for other in keys.values())
    summary["rank"] = pd.Series(ranks, dtype="int64")
    summary["top1"] = summary["rank"] == 1
    summary["top3"] = summary["rank"] <= 3
    return summary[list(dict.fromkeys([*SUMMARY_COLUMNS, *ROW, "metric", *LENGTH_AND_DATA]))]


def summary_csv_table(summary: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: the summary with each row's mean, std and interval in its own metric.

    The *_test_acc columns keep their names and meaning: filled only for rows ranked by
    test_acc (error or accuracy), empty for rows ranked by another metric.
    """
    table = summary.copy()
    metrics = [metric_named(m) for m in table["metric"]]
    shown = [
        (
            m.shown(mean),
            m.shown_spread(std),
            *m.shown_interval(low, high),
        )
        for m, mean, std, low, high in zip(
            metrics,
            table["mean_test_acc"],
            table["std_test_acc"],
            table["ci_low_test_acc"],
            table["ci_high_test_acc"],
            strict=True,
        )
    ]
    for j, column in enumerate(SHOWN_COLUMNS[1:]):
        table[column] = [rounded(float(row[j])) for row in shown]
    by_accuracy = pd.Series([m.column == "test_acc" for m in metrics], index=table.index)
    for column in ACCURACY_COLUMNS:
        table[column] = table[column].where(by_accuracy)
    return table[SUMMARY_CSV_COLUMNS]


LENGTH_AND_DATA = ["full_epochs", "limit_train"]  # what a published number must share


def _length_and_data(runs: pd.DataFrame) -> dict[str, float]:
    """The full run's length in epochs and the training-set limit (NaN: all of it, or not
    recorded), from the setup the row's runs share."""
    key = runs["setup_key"].iloc[0] if "setup_key" in runs else None
    setup = json.loads(key) if isinstance(key, str) and key else {}
    dataset = setup.get("dataset") if isinstance(setup.get("dataset"), dict) else {}
    return {
        "full_epochs": _number(setup.get("full_epochs")),
        "limit_train": _number(dataset.get("limit_train")),
    }


def _number(value: object) -> float:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else math.nan
    )


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
    """Per schedule (and variant), the percentage of its cells where it finished top-1 and top-3."""
    rows = []
    for (schedule, variant), group in summary.groupby(FINISH_ROW, sort=True):
        low = group[group["budget"].map(is_low)]
        high = group[~group["budget"].map(is_low)]
        rows.append(
            {
                "schedule": schedule,
                "variant": variant,
                "cells": len(group),
                "low_top1": _percent(low["top1"]),
                "low_top3": _percent(low["top3"]),
                "high_top1": _percent(high["top1"]),
                "high_top3": _percent(high["top3"]),
                "top1": _percent(group["top1"]),
                "top3": _percent(group["top3"]),
            }
        )
    table = pd.DataFrame(rows, columns=[*FINISH_COLUMNS, "variant"])
    return table.sort_values(
        ["top1", "top3", "schedule", "variant"],
        ascending=[False, False, True, True],
        na_position="last",
    ).reset_index(drop=True)


def _percent(flags: pd.Series) -> float:
    """NaN when the schedule took part in no such cell: 0% would claim it lost them."""
    return round(100.0 * float(flags.sum()) / len(flags), 2) if len(flags) else math.nan


def notes(runs: pd.DataFrame, chosen: pd.DataFrame) -> list[Problem]:
    """What the reader should know about numbers that are in the tables."""
    return [
        *_missing_seeds(runs, chosen),
        *_stopped_early(chosen),
        *_mixed_provenance(chosen),
    ]


def _stopped_early(chosen: pd.DataFrame) -> list[Problem]:
    """Runs that early stopping ended before their budget: ranked on their last epoch."""
    out = []
    stopped = chosen[chosen["stopped_early"].fillna(False).astype(bool)]
    sizes = chosen.groupby(ROW).size()
    for key, group in stopped.groupby(ROW, sort=True):
        total = int(sizes[key])
        at = [
            f"seed {seed} at epoch {int(e)}" if math.isfinite(float(e)) else f"seed {seed}"
            for seed, e in zip(group["seed"], group["stopped_epoch"], strict=True)
        ]
        out.append(
            Problem(
                common_parent(group["path"]),
                f"{describe_row(key)}: {len(group)} of {total} run(s) stopped early "
                f"({', '.join(at)} of {int(group['epochs'].max())}); their last metrics count "
                "as they stand",
                NOTE,
            )
        )
    return out


def _mixed_provenance(chosen: pd.DataFrame) -> list[Problem]:
    """Rows whose seeds ran with different threads, devices or precisions: said, not hidden."""
    out = []
    given = chosen[list(NUMERIC_PROVENANCE)]
    given = given.where(given.map(lambda v: isinstance(v, str) and v != ""))
    many = (given.groupby([chosen[c] for c in ROW], sort=True).nunique() > 1).any(axis=1)
    if not many.any():  # the common case, found without a frame per row
        return out
    mixed = pd.MultiIndex.from_frame(chosen[ROW]).isin(many[many].index)
    for key, group in chosen[mixed].groupby(ROW, sort=True):
        differ = []
        for name in NUMERIC_PROVENANCE:
            values = sorted({v for v in group[name] if isinstance(v, str) and v})
            if len(values) > 1:
                differ.append(f"{name} {{{', '.join(values)}}}")
        if differ:
            out.append(
                Problem(
                    common_parent(group["path"]),
                    f"{describe_row(key)}: its seeds ran with different {' and '.join(differ)}; "
                    "floating-point results can differ with them",
                    NOTE,
                )
            )
    return out


def _missing_seeds(runs: pd.DataFrame, chosen: pd.DataFrame) -> list[Problem]:
    """A row with fewer seeds than its cell ran (skipped runs included)."""
    out = []
    expected = runs.groupby(COMPARED)["seed"].agg(lambda s: sorted(set(s)))
    have = chosen.groupby(ROW, sort=True)["seed"].nunique()  # chosen's seeds are runs' seeds
    want = expected.map(len).reindex(have.index.droplevel(ROW[len(COMPARED) :])).to_numpy()
    short = have.index[have.to_numpy() < want]
    if short.empty:
        return out
    for key, group in chosen[pd.MultiIndex.from_frame(chosen[ROW]).isin(short)].groupby(ROW):
        want = expected[key[: len(COMPARED)]]
        have = sorted(set(group["seed"]))
        missing = [s for s in want if s not in have]
        if missing:
            out.append(
                Problem(
                    common_parent(group["path"]),
                    f"{describe_row(key)}: mean over seeds {_ints(have)} only, "
                    f"seeds {_ints(missing)} missing",
                    NOTE,
                )
            )
    return out


def _ints(values: Iterable[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"
