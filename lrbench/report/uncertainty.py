"""How sure each finish is: a paired bootstrap over seeds.

Seeds are paired: within a cell, seed s of every schedule starts from the same weights and
sees the data in the same order. So a resample draws seed indices jointly for all the rows of
a cell (m of its m paired seeds, with replacement) and recomputes every row's score over those
seeds. Each resample is ranked by the report's rule: fewer diverged seeds first, then a higher
mean of the finished ones, so a diverged seed is the worst result a seed can have. P(top-1) and
P(top-3) are the fractions of resamples in which a row is top-1 / top-3, ties counting for all.
Seeds that some row of a cell lacks are left out of its pairing (noted). A learning rate chosen
on validation is taken as fixed: resamples do not choose it again.

Where the distinct resamples are few (multisets of m out of m seeds: 10 for three, 92,378 for
ten; up to EXACT_LIMIT) they are all enumerated with their exact probabilities, so P(top-k)
is exact; above, N_RESAMPLES Monte-Carlo draws. Expected finishes combine the cells' P(top-k)
exactly (cells are resampled independently: the number of cells won is Poisson-binomial).

A row's 95% interval: with five or more finished seeds the percentile bootstrap interval of
their mean (exact when few, else scipy.stats.bootstrap); with two to four, the Student-t
interval of the mean, because a percentile bootstrap interval of n values never reaches past
their range and covers about 1 - 2 * 0.5^n of the time at most (75% for three), whatever it is
labelled; the t-interval widens as it should when seeds are few. Every generator is seeded
from the cell's name, so a report is reproducible byte for byte and a cell's numbers do not
depend on the other cells reported with it.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

from lrbench.report.metric import in_metric, interval_in_metric, metric_named, rounded
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
EXACT_LIMIT = 100_000  # distinct resamples up to which they are enumerated (m <= 10 seeds)
FEW_SEEDS = 5  # below: the t-interval of the mean (a bootstrap's would be the seeds' range)
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
    "interval",
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
    top1: dict[tuple, list[float]] = {}
    top3: dict[tuple, list[float]] = {}
    problems: list[Problem] = []
    unpaired: list[str] = []
    no_interval: list[pd.DataFrame] = []
    few: list[tuple[int, pd.DataFrame]] = []
    row_of = {tuple(k): i for i, k in zip(summary.index, summary[ROW].to_numpy(), strict=True)}
    for key, cell in chosen.groupby(COMPARED, sort=True):
        ci_rng, rank_rng = (np.random.default_rng(s) for s in _seeds(key).spawn(2))
        rows = [(row_of[k], runs) for k, runs in cell.groupby(ROW, sort=True)]
        intervals = _intervals(rows, ci_rng)
        no_interval += [runs for i, runs in rows if i not in intervals]
        few += [(i, runs) for i, runs in rows if intervals.get(i, ("", "", ""))[2] == "t"]
        seeds = [set(runs["seed"]) for _, runs in rows]
        common = sorted(set.intersection(*seeds))
        left_out = sorted(set.union(*seeds) - set(common))
        if left_out and len(common) >= 2:
            problems.append(_pairing_note(key, rows, common, left_out))
        finishes = _resampled_ranks(rows, common, rank_rng) if len(common) >= 2 else None
        if finishes is None:
            unpaired.append(common_parent(cell["path"]))
        for r, (i, runs) in enumerate(rows):
            low, high, kind = intervals.get(i, (math.nan, math.nan, ""))
            name = (runs["schedule"].iloc[0], runs["variant"].iloc[0])
            p1, p3 = (
                (math.nan, math.nan)
                if finishes is None
                else (round(float(finishes[0][r]), DIGITS), round(float(finishes[1][r]), DIGITS))
            )
            top1.setdefault(name, []).append(p1)
            top3.setdefault(name, []).append(p3)
            values[i] = dict(zip(UNCERTAINTY_COLUMNS, (low, high, p1, p3, kind), strict=True))
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
    if few:
        problems.append(_few_seeds_note(few))
    intervals = pd.DataFrame.from_dict(values, orient="index", columns=UNCERTAINTY_COLUMNS)
    return Bootstrap(intervals.reindex(summary.index), _expected(top1, top3), problems)


def _seeds(key: tuple) -> np.random.SeedSequence:
    """A cell's own seed sequence: from its name, so adding a cell changes no other cell."""
    digest = hashlib.sha256(repr(tuple(str(k) for k in key)).encode()).digest()
    return np.random.SeedSequence([SEED, *np.frombuffer(digest, dtype=np.uint32).tolist()])


def resamples(m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resamples of m seeds as (counts, weights): counts[b, j] is how often seed j is drawn.

    When the distinct resamples (multisets of m out of m: C(2m-1, m), 10 for three seeds,
    92,378 for ten) are at most EXACT_LIMIT, all of them with their exact probabilities
    (multinomial: m! / prod(counts!) / m^m); above, N_RESAMPLES Monte-Carlo draws of equal weight.
    """
    if math.comb(2 * m - 1, m) <= EXACT_LIMIT:
        return _every_resample(m)
    counts = rng.multinomial(m, np.full(m, 1 / m), size=N_RESAMPLES).astype(float)
    return counts, np.full(N_RESAMPLES, 1 / N_RESAMPLES)


@functools.lru_cache(maxsize=16)
def _every_resample(m: int) -> tuple[np.ndarray, np.ndarray]:
    """All multisets of m out of m seeds as counts, with their probabilities (read-only)."""
    # scipy is imported where used: its second of import then overlaps the figures' drawing
    from scipy.special import gammaln

    counts = np.zeros((math.comb(2 * m - 1, m), m))
    for b, drawn in enumerate(combinations_with_replacement(range(m), m)):
        for j in drawn:
            counts[b, j] += 1
    log_w = gammaln(m + 1) - gammaln(counts + 1).sum(axis=1) - m * math.log(m)
    weights = np.exp(log_w)
    counts.setflags(write=False)
    weights.setflags(write=False)
    return counts, weights


def weighted_quantiles(
    values: np.ndarray, weights: np.ndarray, qs: tuple[float, ...]
) -> list[float]:
    """For each q, the smallest value whose cumulative weight reaches q (numpy's
    "inverted_cdf" method, with weights); one sort for all of them."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    at = np.searchsorted(cumulative, np.asarray(qs) * cumulative[-1] - 1e-12, side="left")
    return [float(values[order][min(int(i), len(values) - 1)]) for i in at]


def bootstrap_interval(scores: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean of `scores` (exact when few)."""
    n = len(scores)
    if math.comb(2 * n - 1, n) > EXACT_LIMIT:
        from scipy.stats import bootstrap

        ci = bootstrap(
            (scores,),
            np.mean,
            n_resamples=N_RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            rng=rng,
        ).confidence_interval
        return round(float(ci.low), DIGITS), round(float(ci.high), DIGITS)
    counts, weights = resamples(n, rng)
    means = np.round(counts @ scores / n, DIGITS)
    tail = (1 - CONFIDENCE) / 2
    low, high = weighted_quantiles(means, weights, (tail, 1 - tail))
    return low, high


def t_interval(scores: np.ndarray) -> tuple[float, float]:
    """The 95% Student-t interval of the mean: mean ± t(0.975, n-1) · s / √n."""
    from scipy.stats import t

    n = len(scores)
    mean = math.fsum(scores) / n
    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * float(np.std(scores, ddof=1)) / math.sqrt(n)
    return round(mean - half, DIGITS), round(mean + half, DIGITS)


def bootstrap_coverage(n: int) -> float:
    """The most a percentile bootstrap interval of n values can cover: it never reaches past
    their range, and the mean of n draws lies outside the range with probability 2 · 0.5^n."""
    return 1 - 2 * 0.5**n


def _intervals(
    rows: list[tuple[int, pd.DataFrame]], rng: np.random.Generator
) -> dict[int, tuple[float, float, str]]:
    """Per row with two or more finished seeds: its 95% interval of the mean and its kind.

    Fewer than FEW_SEEDS finished seeds: the t-interval (a bootstrap interval would be at most
    their range, covering about 1 - 2 * 0.5^n), cut to the scores' range (an accuracy stays in
    [0, 1]); more: the percentile bootstrap interval.
    """
    out: dict[int, tuple[float, float, str]] = {}
    for i, runs in rows:
        scores = runs.loc[runs["status"] == "done", "score"].to_numpy(dtype=float)
        if len(scores) < 2:
            continue
        if len(scores) < FEW_SEEDS:
            low, high = t_interval(scores)
            bottom, top = metric_named(runs["metric"].iloc[0]).score_bounds
            out[i] = (max(low, bottom), min(high, top), "t")
        else:
            out[i] = (*bootstrap_interval(scores, rng), "bootstrap")
    return out


def _resampled_ranks(
    rows: list[tuple[int, pd.DataFrame]], common: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(P(top-1), P(top-3)) per row: the rank rule applied in each paired resample, weighted
    by the resample's probability."""
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
    counts, weights = resamples(len(common), rng)
    n_div, n_fin, sums = counts @ diverged.T, counts @ finished.T, counts @ total.T
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_fin > 0, np.round(sums / n_fin, DIGITS), -np.inf)
    # better[b, r, s]: in resample b, row s is strictly better than row r
    fewer = n_div[:, None, :] < n_div[:, :, None]
    higher = (n_div[:, None, :] == n_div[:, :, None]) & (mean[:, None, :] > mean[:, :, None])
    rank = 1 + (fewer | higher).sum(axis=2)
    return weights @ (rank == 1), weights @ (rank <= 3)


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


def _few_seeds_note(few: list[tuple[int, pd.DataFrame]]) -> Problem:
    sizes = sorted({int((runs["status"] == "done").sum()) for _, runs in few})
    counts = f"{sizes[0]}-{sizes[-1]}" if len(sizes) > 1 else f"{sizes[0]}"
    coverage = ", ".join(f"{100 * bootstrap_coverage(n):.0f}% for {n}" for n in sizes)
    return Problem(
        common_parent(p for _, runs in few for p in runs["path"]),
        f"few seeds: {len(few)} row(s) have {counts} finished seeds (fewer than {FEW_SEEDS}); "
        "a bootstrap interval of n seeds is at most their range and covers about "
        f"1 - 2 * 0.5^n ({coverage}), so their interval is the 95% t-interval of the mean "
        "instead; run more seeds to narrow it",
        NOTE,
    )


def _expected(top1: dict[tuple, list[float]], top3: dict[tuple, list[float]]) -> pd.DataFrame:
    """Per finish row: the percent of its cells where it is top-1 (top-3), expected over
    resamples, and its 95% interval; empty when one of its cells has no resamples.

    Cells are resampled independently, so the number of cells won is a sum of independent
    Bernoulli draws with each cell's P(top-k): its exact (Poisson-binomial) distribution
    gives the interval.
    """
    rows = []
    tail = (1 - CONFIDENCE) / 2
    for name in sorted(top1):
        row = dict(zip(FINISH_ROW, name, strict=True))
        for k, probs in (("top1", top1[name]), ("top3", top3[name])):
            if any(math.isnan(p) for p in probs):
                values: tuple[float, ...] = (math.nan,) * 3
            else:
                wins = poisson_binomial(probs)
                shares = 100 * np.arange(len(wins)) / len(probs)
                values = (
                    100 * math.fsum(probs) / len(probs),
                    *weighted_quantiles(shares, wins, (tail, 1 - tail)),
                )
            names = [f"expected_{k}", f"expected_{k}_low", f"expected_{k}_high"]
            row.update({n: round(float(v), 2) for n, v in zip(names, values, strict=True)})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*FINISH_ROW, *EXPECTED_COLUMNS])


def poisson_binomial(probs: list[float]) -> np.ndarray:
    """P(k successes), k = 0..len(probs), for independent trials of the given probabilities."""
    dist = np.array([1.0])
    for p in probs:
        dist = np.convolve(dist, [1 - p, p])
    return dist


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
                "interval": r["interval"],
                "variant": r["variant"],
            }
        )
    columns = list(UNCERTAINTY_CSV_COLUMNS)
    if (summary["variant"] != "").any():
        columns.append("variant")
    return pd.DataFrame(rows, columns=[*UNCERTAINTY_CSV_COLUMNS, "variant"])[columns]
