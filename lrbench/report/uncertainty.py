"""How sure each finish is: a paired bootstrap over seeds.

Seeds are paired: within a cell, seed s of every schedule starts from the same weights and
sees the data in the same order. So a resample draws seed indices jointly for all the rows of
a cell (m of its m paired seeds, with replacement) and recomputes every row's score over those
seeds. Each resample is ranked by the report's rule: fewer diverged seeds first, then a higher
mean of the finished ones, so a diverged seed is the worst result a seed can have. P(top-1) and
P(top-3) are the fractions of resamples in which a row is top-1 / top-3, ties counting for all.
Seeds that some row of a cell lacks are left out of its pairing (noted). A learning rate chosen
on validation is taken as fixed: resamples do not choose it again.

A row's 95% interval is scipy.stats.bootstrap's percentile interval of the mean over its
finished seeds. Every generator is seeded from the cell's name, so a report is reproducible
byte for byte and a cell's numbers do not depend on the other cells reported with it.

Three seeds allow only ten distinct resamples (multisets of three out of three), so the
probabilities move in coarse steps and the interval is the range of the three seeds.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from lrbench.report.metric import in_metric, interval_in_metric, rounded
from lrbench.report.problems import NOTE, Problem, common_parent
from lrbench.report.rank import (
    CELL,
    COMPARED,
    EXPECTED_COLUMNS,
    FINISH_ROW,
    ROW,
    UNCERTAINTY_COLUMNS,
    describe_cell,
)
from lrbench.report.variants import shown

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 14  # the base of every generator: change it and every report's resamples change
DIGITS = 12  # means compared to 12 decimals: equal seeds summed in another order still tie
UNCERTAINTY_CSV_COLUMNS = [
    *CELL,
    "schedule",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "p_top1",
    "p_top3",
]


@dataclass
class Bootstrap:
    """Per summary row: interval and P(top-k); per finish row: expected finishes; and notes."""

    intervals: pd.DataFrame  # summary's index, UNCERTAINTY_COLUMNS
    expected: pd.DataFrame  # FINISH_ROW + EXPECTED_COLUMNS
    problems: list[Problem] = field(default_factory=list)


def paired_bootstrap(chosen: pd.DataFrame, summary: pd.DataFrame) -> Bootstrap:
    """Intervals and finish probabilities for every row of `summary` (built from `chosen`)."""
    values: dict[int, dict[str, float]] = {}
    top1: dict[tuple, list[np.ndarray | None]] = {}
    top3: dict[tuple, list[np.ndarray | None]] = {}
    problems: list[Problem] = []
    unpaired: list[str] = []
    no_interval: list[pd.DataFrame] = []
    row_of = {tuple(k): i for i, k in zip(summary.index, summary[ROW].to_numpy(), strict=True)}
    for key, cell in chosen.groupby(COMPARED, sort=True):
        ci_rng, rank_rng = (np.random.default_rng(s) for s in _seeds(key).spawn(2))
        rows = [(row_of[k], runs) for k, runs in cell.groupby(ROW, sort=True)]
        intervals = _intervals(rows, ci_rng)
        no_interval += [runs for i, runs in rows if i not in intervals]
        seeds = [set(runs["seed"]) for _, runs in rows]
        common = sorted(set.intersection(*seeds))
        left_out = sorted(set.union(*seeds) - set(common))
        if left_out and len(common) >= 2:
            problems.append(_pairing_note(key, rows, common, left_out))
        finishes = _resampled_ranks(rows, common, rank_rng) if len(common) >= 2 else None
        if finishes is None:
            unpaired.append(common_parent(cell["path"]))
        for r, (i, runs) in enumerate(rows):
            low, high = intervals.get(i, (math.nan, math.nan))
            name = (runs["schedule"].iloc[0], runs["variant"].iloc[0])
            flags = (None, None) if finishes is None else (finishes[0][:, r], finishes[1][:, r])
            top1.setdefault(name, []).append(flags[0])
            top3.setdefault(name, []).append(flags[1])
            values[i] = dict(
                zip(
                    UNCERTAINTY_COLUMNS,
                    (low, high, *(math.nan if f is None else float(f.mean()) for f in flags)),
                    strict=True,
                )
            )
    if unpaired:
        problems.append(
            Problem(
                common_parent(unpaired),
                f"{len(unpaired)} cell(s) have fewer than two seeds run by all their schedules: "
                "P(top-1), P(top-3) and the expected finishes of their schedules are left empty "
                "(resampling one seed has one outcome)",
                NOTE,
            )
        )
    if no_interval:
        problems.append(
            Problem(
                common_parent(p for runs in no_interval for p in runs["path"]),
                f"{len(no_interval)} row(s) have fewer than two finished seeds: no 95% interval "
                "(resampling one value has one outcome)",
                NOTE,
            )
        )
    intervals = pd.DataFrame.from_dict(values, orient="index", columns=UNCERTAINTY_COLUMNS)
    return Bootstrap(intervals.reindex(summary.index), _expected(top1, top3), problems)


def _seeds(key: tuple) -> np.random.SeedSequence:
    """A cell's own seed sequence: from its name, so adding a cell changes no other cell."""
    digest = hashlib.sha256(repr(tuple(str(k) for k in key)).encode()).digest()
    return np.random.SeedSequence([SEED, *np.frombuffer(digest, dtype=np.uint32).tolist()])


def _intervals(
    rows: list[tuple[int, pd.DataFrame]], rng: np.random.Generator
) -> dict[int, tuple[float, float]]:
    """Percentile 95% intervals of the mean final test accuracy over each row's finished seeds.

    Rows with as many finished seeds go through scipy in one vectorised call.
    """
    by_size: dict[int, list[tuple[int, np.ndarray]]] = {}
    for i, runs in rows:
        scores = runs.loc[runs["status"] == "done", "score"].to_numpy(dtype=float)
        if len(scores) >= 2:
            by_size.setdefault(len(scores), []).append((i, scores))
    out: dict[int, tuple[float, float]] = {}
    for size in sorted(by_size):
        index, data = zip(*by_size[size], strict=True)
        ci = bootstrap(
            (np.stack(data),),
            np.mean,
            axis=-1,
            vectorized=True,
            n_resamples=N_RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=rng,
        ).confidence_interval
        low, high = np.round(ci.low, DIGITS), np.round(ci.high, DIGITS)
        out.update({i: (float(lo), float(hi)) for i, lo, hi in zip(index, low, high, strict=True)})
    return out


def _resampled_ranks(
    rows: list[tuple[int, pd.DataFrame]], common: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(top1, top3): booleans of shape (resamples, rows), the rank rule applied per resample.

    A seed run twice in a row counts twice, as in the summary's mean.
    """
    where = {seed: j for j, seed in enumerate(common)}
    diverged, finished, total = (np.zeros((len(rows), len(common))) for _ in range(3))
    for r, (_, runs) in enumerate(rows):
        for seed, status, score in zip(runs["seed"], runs["status"], runs["score"], strict=True):
            if seed not in where:
                continue
            if status == "diverged":
                diverged[r, where[seed]] += 1
            else:
                finished[r, where[seed]] += 1
                total[r, where[seed]] += score
    m = len(common)
    counts = rng.multinomial(m, np.full(m, 1 / m), size=N_RESAMPLES).astype(float)
    n_div, n_fin, sums = counts @ diverged.T, counts @ finished.T, counts @ total.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_fin > 0, np.round(sums / n_fin, DIGITS), -np.inf)
    # better[b, r, s]: in resample b, row s is strictly better than row r
    fewer = n_div[:, None, :] < n_div[:, :, None]
    higher = (n_div[:, None, :] == n_div[:, :, None]) & (mean[:, None, :] > mean[:, :, None])
    rank = 1 + (fewer | higher).sum(axis=2)
    return rank == 1, rank <= 3


def _pairing_note(
    key: tuple, rows: list[tuple[int, pd.DataFrame]], common: list[int], left_out: list[int]
) -> Problem:
    lacking = [
        shown(runs["schedule"].iloc[0], runs["variant"].iloc[0])
        for _, runs in rows
        if set(left_out) - set(runs["seed"])
    ]
    return Problem(
        common_parent(p for _, runs in rows for p in runs["path"]),
        f"{describe_cell(key)}: seeds {_ints(left_out)} are not run by every schedule (missing "
        f"for {', '.join(lacking)}); P(top-1) and P(top-3) pair seeds {_ints(common)} only",
        NOTE,
    )


def _ints(values: list[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def _expected(
    top1: dict[tuple, list[np.ndarray | None]], top3: dict[tuple, list[np.ndarray | None]]
) -> pd.DataFrame:
    """Per finish row: the percent of its cells where it is top-1 (top-3), mean over resamples
    and 95% interval; empty when one of its cells has no resamples."""
    rows = []
    for name in sorted(top1):
        row = dict(zip(FINISH_ROW, name, strict=True))
        for k, flags in (("top1", top1[name]), ("top3", top3[name])):
            if any(f is None for f in flags):
                share = None
            else:
                share = 100 * np.mean(np.stack(flags), axis=0)  # per resample, over cells
            values = (
                (math.nan,) * 3
                if share is None
                else (share.mean(), *np.percentile(share, [2.5, 97.5]))
            )
            names = [f"expected_{k}", f"expected_{k}_low", f"expected_{k}_high"]
            row.update({n: round(float(v), 2) for n, v in zip(names, values, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*FINISH_ROW, *EXPECTED_COLUMNS])


def uncertainty_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """uncertainty.csv: every row's mean, 95% interval and P(top-k) in the report's metric.

    A `variant` column is added only when some rows need telling apart.
    """
    rows = []
    for r in summary.to_dict("records"):
        low, high = interval_in_metric(r["ci_low_test_acc"], r["ci_high_test_acc"], metric)
        rows.append(
            {
                **{c: r[c] for c in [*CELL, "schedule", "n"]},
                "mean": rounded(in_metric(r["mean_test_acc"], metric)),
                "ci_low": rounded(low),
                "ci_high": rounded(high),
                "p_top1": r["p_top1"],
                "p_top3": r["p_top3"],
                "variant": r["variant"],
            }
        )
    columns = list(UNCERTAINTY_CSV_COLUMNS)
    if (summary["variant"] != "").any():
        columns.append("variant")
    return pd.DataFrame(rows, columns=[*UNCERTAINTY_CSV_COLUMNS, "variant"])[columns]
