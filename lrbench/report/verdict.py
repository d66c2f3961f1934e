"""The verdict: per cell, who wins, by how much over the runner-up, and how sure.

A margin is a paired mean difference: seed s of every schedule of a cell starts from the same
weights and sees the same data, so the difference of two schedules is taken seed by seed
(over the seeds both finished) and its 95% interval is the Student-t interval of that mean
(a paired t-interval: it holds for two seeds as for ten, where a bootstrap of a few seeds
would only give their range). The margin is in the cell's metric and positive when the winner
is better (runner-up's error or loss minus the winner's; the winner's accuracy minus the
runner-up's). A call is a coin flip when that interval reaches zero or below; then "seeds
needed" is how many paired seeds, at the observed mean and spread of the differences, would
make the interval exclude zero.

`--baseline SCHEDULE`: every other schedule of a cell against the baseline, paired the same
way. With m comparisons in a cell the intervals are adjusted by Holm's step-down rule: sorted
by their paired t-test's p-value, the i-th (from 1) is judged at level 0.05 / (m - i + 1),
so its interval is the (1 - 0.05 / (m - i + 1)) t-interval; `p_holm` is Holm's adjusted
p-value, max over j <= i of min(1, (m - j + 1) p_(j)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lrbench.report.metric import Metric, metric_named, rounded
from lrbench.report.rank import CELL, COMPARED, ROW, order_key
from lrbench.report.variants import shown

ALPHA = 0.05
MAX_SEEDS_NEEDED = 1000
VERDICT_CSV_COLUMNS = [
    *CELL,
    "winner",
    "runner_up",
    "margin",
    "margin_low",
    "margin_high",
    "p_top1",
    "n",
    "coin_flip",
    "seeds_needed",
    "metric",
    "setup",
    "winner_diverged",
    "runner_up_diverged",
]
BASELINE_CSV_COLUMNS = [
    *CELL,
    "schedule",
    "baseline",
    "n",
    "difference",
    "low",
    "high",
    "level",
    "p_value",
    "p_holm",
    "metric",
    "setup",
]


@dataclass(frozen=True)
class Paired:
    """A paired mean difference of scores over `n` seeds, with its spread (sample std)."""

    n: int
    mean: float
    std: float

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """The t-interval of the mean difference; NaN with fewer than two seeds."""
        if self.n < 2:
            return math.nan, math.nan
        # scipy is imported where used: its second of import then overlaps the figures' drawing
        from scipy.stats import t

        half = float(t.ppf(0.5 + level / 2, self.n - 1)) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def p_value(self) -> float:
        """Two-sided paired t-test of a zero mean difference."""
        if self.n < 2:
            return math.nan
        if self.std == 0:
            return 1.0 if self.mean == 0 else 0.0
        from scipy.stats import t

        return float(2 * t.sf(abs(self.mean) / (self.std / math.sqrt(self.n)), self.n - 1))

    def seeds_needed(self) -> float:
        """Seeds at which the observed mean would clear its 95% interval (NaN: already does;
        inf: never, no difference seen or more than MAX_SEEDS_NEEDED)."""
        low, _ = self.interval()
        if self.n >= 2 and low > 0:
            return math.nan
        if self.mean <= 0 or self.n < 2:
            return math.inf
        from scipy.stats import t

        n = np.arange(max(self.n, 2), MAX_SEEDS_NEEDED + 1)  # every count at once: one ppf call
        clears = t.ppf(0.5 + (1 - ALPHA) / 2, n - 1) * self.std / np.sqrt(n) < self.mean
        return float(n[clears.argmax()]) if clears.any() else math.inf


def paired(better: pd.DataFrame, worse: pd.DataFrame) -> Paired:
    """`better`'s score minus `worse`'s, seed by seed, over the seeds both finished."""
    a = better[better["status"] == "done"].set_index("seed")["score"]
    b = worse[worse["status"] == "done"].set_index("seed")["score"]
    d = (a - b).dropna().to_numpy(dtype=float)
    if len(d) == 0:
        return Paired(0, math.nan, math.nan)
    return Paired(
        len(d), math.fsum(d) / len(d), float(np.std(d, ddof=1)) if len(d) > 1 else math.nan
    )


def verdicts(chosen: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """verdict.csv: one row per cell with two or more schedules (VERDICT_CSV_COLUMNS)."""
    rows = []
    runs_of = dict(tuple(chosen.groupby(ROW, sort=True)))
    for key, cell in summary.groupby(COMPARED, sort=True):
        if len(cell) < 2:
            continue
        order = sorted(
            cell.to_dict("records"),
            key=lambda r: (*order_key(r["n_diverged"], r["mean_test_acc"]), _name(r)),
        )
        winner, runner_up = order[0], order[1]
        metric = metric_named(winner["metric"])
        diff = paired(runs_of[_row_key(winner)], runs_of[_row_key(runner_up)])
        low, high = diff.interval()
        coin_flip = not (math.isfinite(low) and low > 0)
        rows.append(
            {
                **dict(zip(CELL, key[: len(CELL)], strict=True)),
                "winner": _name(winner),
                "runner_up": _name(runner_up),
                "margin": rounded(metric.shown_difference(diff.mean)),
                "margin_low": rounded(metric.shown_difference(low)),
                "margin_high": rounded(metric.shown_difference(high)),
                "p_top1": winner["p_top1"],
                "n": diff.n,
                "coin_flip": coin_flip,
                "seeds_needed": diff.seeds_needed() if coin_flip else math.nan,
                "metric": metric.name,
                "setup": key[-1],
                "winner_diverged": int(winner["n_diverged"]),
                "runner_up_diverged": int(runner_up["n_diverged"]),
            }
        )
    return pd.DataFrame(rows, columns=VERDICT_CSV_COLUMNS)


def against_baseline(chosen: pd.DataFrame, summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """baseline.csv: per cell holding `baseline`, each other schedule's paired difference to
    it (positive: better than the baseline), Holm-adjusted (BASELINE_CSV_COLUMNS)."""
    rows = []
    runs_of = dict(tuple(chosen.groupby(ROW, sort=True)))
    for key, cell in summary.groupby(COMPARED, sort=True):
        records = cell.to_dict("records")
        base = [r for r in records if r["schedule"] == baseline]
        if not base:
            continue
        metric = metric_named(base[0]["metric"])
        others = [r for r in records if r is not base[0]]
        diffs = [paired(runs_of[_row_key(r)], runs_of[_row_key(base[0])]) for r in others]
        levels, p_holm = holm([d.p_value() for d in diffs])
        for r, d, level, adjusted in zip(others, diffs, levels, p_holm, strict=True):
            low, high = d.interval(level)
            rows.append(
                {
                    **dict(zip(CELL, key[: len(CELL)], strict=True)),
                    "schedule": _name(r),
                    "baseline": _name(base[0]),
                    "n": d.n,
                    "difference": rounded(metric.shown_difference(d.mean)),
                    "low": rounded(metric.shown_difference(low)),
                    "high": rounded(metric.shown_difference(high)),
                    "level": round(level, 6),
                    "p_value": rounded(d.p_value()),
                    "p_holm": rounded(adjusted),
                    "metric": metric.name,
                    "setup": key[-1],
                }
            )
    return pd.DataFrame(rows, columns=BASELINE_CSV_COLUMNS)


def holm(p_values: list[float], alpha: float = ALPHA) -> tuple[list[float], list[float]]:
    """(confidence level, Holm-adjusted p-value) per comparison, in the given order.

    The comparison with the i-th smallest p-value (from 1, of m) is judged at alpha/(m-i+1);
    a comparison without a p-value (fewer than two paired seeds) counts in m and sorts last.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    levels = [math.nan] * m
    adjusted = [math.nan] * m
    running = 0.0
    for step, i in enumerate(order):
        levels[i] = 1 - alpha / (m - step)
        if not math.isnan(p_values[i]):
            running = max(running, min(1.0, (m - step) * p_values[i]))
            adjusted[i] = running
    return levels, adjusted


def _row_key(row: dict) -> tuple:
    return tuple(row[c] for c in ROW)


def _name(row: dict) -> str:
    return shown(row["schedule"], row["variant"])


def unit(metric: Metric) -> str:
    """What a margin is counted in: points of a percentage, or the loss's unit."""
    if metric.percent:
        return "points"
    return metric.label.split("(")[-1].rstrip(")") if "(" in metric.label else ""


def lines(verdict: pd.DataFrame) -> list[str]:
    """One plain line per cell, for the terminal, tables.md and report.html."""
    out = []
    for r in verdict.to_dict("records"):
        metric = metric_named(r["metric"])
        where = f"{r['dataset']} · {r['model']} · {r['optimizer']}"
        if r["setup"]:
            where += f" [{r['setup']}]"
        where += f", budget {100 * r['budget']:g}%"
        interval = (
            f" [{r['margin_low']:.2f}, {r['margin_high']:.2f}]"
            if math.isfinite(r["margin_low"])
            else " (no interval: fewer than two paired seeds)"
        )
        p = f", P(top-1) {r['p_top1']:.2f}" if math.isfinite(r["p_top1"]) else ""
        what = f"{metric.title}, {unit(metric)}, paired over {r['n']} seeds"
        if r["winner_diverged"] < r["runner_up_diverged"]:
            what += (
                f"; ranked first on fewer diverged seeds, {r['winner_diverged']} against "
                f"{r['runner_up_diverged']}"
            )
        if not r["coin_flip"]:
            out.append(
                f"{where}: {r['winner']} wins, by {r['margin']:.2f}{interval} over "
                f"{r['runner_up']} ({what}){p}"
            )
            continue
        needed = r["seeds_needed"]
        settle = (
            f"; about {int(needed)} seeds would settle it"
            if math.isfinite(needed)
            else "; more seeds would not settle it at this spread"
            if r["n"] >= 2
            else ""
        )
        out.append(
            f"{where}: ≈ coin flip — {r['winner']} ahead of {r['runner_up']} by "
            f"{r['margin']:.2f}{interval} ({what}){p}{settle}"
        )
    return out
