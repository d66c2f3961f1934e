"""The report's figures, each laid out once and drawn twice: as a PNG file and as SVG inline in
report.html. Each is built by a function of the analysis that returns a matplotlib Figure, so
that figures can be drawn in parallel, each in its own process, and tested as figures.

Figures are built with matplotlib.figure.Figure rather than pyplot: no global backend or
figure registry, so the report runs headless and leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lrbench.forked import Forked, fork_start
from lrbench.report.anytime import Anytime
from lrbench.report.curves import Curves
from lrbench.report.gridlayout import lay_out_grid
from lrbench.report.metric import Metric, metric_named
from lrbench.report.rank import CELL, COMPARED
from lrbench.report.rebuild import rebuild_schedule
from lrbench.report.variants import SETTING, named_rows

DPI = 120
PNG_COMPRESSION = 3  # zlib's 3, not Pillow's 6: 40% less time to encode, 7% more bytes
DRAWING_NICENESS = 10  # figures drawn in the background give way to the analysis (os.nice)
SVG_METADATA = ("Creator", "Date", "Format", "Type")  # matplotlib's defaults, all left out
SVG_ID = re.compile(r'\bid="|url\(#|xlink:href="#')  # where matplotlib's SVG names its ids
# A panel's title sits just above it: no panel has ticks or labels on top, and matplotlib's
# search for them (axes.titley None) was a third of the time a grid of panels took to draw.
# Tick labels are written out in full, never as an offset written above the panel, where the
# title would now cover it.
PANEL_STYLE = {"axes.titley": 1.0, "axes.formatter.useoffset": False}


@dataclass(frozen=True)
class Plot:
    """One figure of the report, drawn: its PNG file (named `name`.png) and its SVG for
    report.html."""

    name: str
    png: bytes = field(repr=False)
    svg: str = field(repr=False)

    def save_png(self, out: Path) -> Path:
        path = out / f"{self.name}.png"
        path.write_bytes(self.png)
        return path


def draw(name: str, figure: Figure) -> Plot:
    """Lay a figure out and draw it as PNG, then draw it once more, as it was laid out, as an
    <svg> element for a page holding several: text stays text (small, searchable, in the
    reader's own sans-serif font), no metadata (the same results give the same page, and nothing
    in it names a URL), every id prefixed with the figure's name."""
    png = io.BytesIO()
    figure.savefig(png, format="png", pil_kwargs={"compress_level": PNG_COMPRESSION})
    figure.set_layout_engine("none")
    svg = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(svg, format="svg", metadata=dict.fromkeys(SVG_METADATA))
    text = svg.getvalue()
    return Plot(name, png.getvalue(), SVG_ID.sub(rf"\g<0>{name}-", text[text.index("<svg") :]))


def slug(parts: tuple[str, ...] | list[str]) -> str:
    """A file-name-safe name for a setting, e.g. cifar10-resnet20-sgd."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts))


def colours(schedules: list[str]) -> dict[str, tuple[float, ...]]:
    """One colour per schedule, the same in every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(schedules) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(sorted(schedules))}


def _panels(
    size: tuple[float, float], rows: int = 1, cols: int = 1, layout: str | None = "constrained"
) -> tuple[Figure, list]:
    """A figure of rows × cols panels (the report's one way to make them)."""
    fig = Figure(figsize=size, layout=layout, dpi=DPI)
    with rc_context(PANEL_STYLE):
        return fig, fig.subplots(rows, cols, squeeze=False).ravel().tolist()


def _grid(
    n: int, width: float = 4.6, height: float = 3.4, layout: str | None = None
) -> tuple[Figure, list]:
    """n panels, three to a row; laid out by _finish_grid unless a `layout` is named."""
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = _panels((width * cols + 1.8, height * rows + 0.6), rows, cols, layout)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _finish_grid(fig: Figure, axes: list, title: str) -> None:
    """A grid's title, one legend for all of its panels at the right, and its layout."""
    heading = fig.suptitle(title)
    handles: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="center right", title="schedule")
    lay_out_grid(fig, axes, heading)


def _epoch_axis(ax) -> None:
    """Whole epochs only, also where the axis spans less than two of them (a one-epoch budget):
    min_n_ticks=1 keeps MaxNLocator from falling back to fractional ticks."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def _budget_axis(ax, budgets: list[float]) -> None:
    """Log x axis ticked at the budgets actually run, labelled as percentages."""
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{100 * b:g}%" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("budget (% of full training, log scale)")


def _curve(curves: Curves, paths: list[str], column: str) -> pd.Series:
    """Mean over the given runs of one curves column, per epoch."""
    rows = curves.of(paths)
    return rows.groupby("epoch")[column].mean().dropna()


def step_rates(run: pd.Series) -> pd.Series | None:
    """The rate of every step of a run, indexed by epochs ((step + 1) / steps per epoch), rebuilt
    from its spec (schedules are pure functions of it); None where the report cannot: user code or
    a schedule this version does not know (rebuild.py), one that reacts to metrics (its rates are
    in metrics.csv), or no steps_per_epoch in spec.json."""
    try:
        steps_per_epoch = float(run["steps_per_epoch"])
        schedule = rebuild_schedule(json.loads(run["schedule_params"]))
    except (ValueError, TypeError):
        return None
    if schedule is None or not steps_per_epoch > 0:  # NaN too
        return None
    if schedule.reactive or schedule.user_code:
        return None
    steps_per_epoch, total = int(steps_per_epoch), int(run["epochs"] * steps_per_epoch)
    rates = run["lr"] * schedule.multipliers(total, steps_per_epoch)
    return pd.Series(rates, index=np.arange(1, total + 1) / steps_per_epoch)


def lr_curves(chosen: pd.DataFrame, curves: Curves, colour: dict) -> Figure:
    """Each schedule's rate from one run at its largest budget, one panel per optimizer: every
    step where the schedule can be rebuilt from its spec, else the last step of each epoch as
    metrics.csv has it (reactive, imported or unknown schedules: dots)."""
    done = chosen[chosen["path"].isin(curves.keys())]
    optimizers = sorted(done["optimizer"].unique()) or ["(no runs)"]
    fig, axes = _grid(len(optimizers), width=5.5, layout="constrained")  # a legend a panel
    for ax, opt in zip(axes, optimizers, strict=True):
        runs = done[done["optimizer"] == opt]
        dots = False
        for schedule, group in runs.groupby("schedule", sort=True):
            top = group[group["budget"] == group["budget"].max()]
            top = (
                top.assign(_unfinished=top["status"] != "done")
                .sort_values(["_unfinished", "path"])
                .iloc[0]
            )
            curve = step_rates(top)
            label = f"{schedule} (b={top['budget']:g}, lr {top['lr']:g})"
            if (
                curve is not None
            ):  # step t's rate holds from epoch t/steps_per_epoch to (t+1)/steps_per_epoch
                x, y = np.r_[0.0, curve.index], np.r_[curve.iloc[0], curve.to_numpy()]
                ax.plot(x, y, drawstyle="steps-pre", color=colour[schedule], label=label)
                continue
            curve = _curve(curves, [top["path"]], "lr")
            dots = True
            ax.plot(curve.index, curve.values, marker=".", color=colour[schedule], label=label)
        ax.set_title(f"{opt}: learning rate (largest budget)")
        _epoch_axis(ax)
        ax.set_ylabel("learning rate" + (" (dots: last step of each epoch)" if dots else ""))
        ax.grid(alpha=0.3)
        if runs.size:  # beside the panel, never over the curves
            ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return fig


def accuracy_curves(
    chosen: pd.DataFrame, curves: Curves, colour: dict, metric: str | Metric = "error"
) -> dict[str, Callable[[], Figure]]:
    """Per setting (test_acc_<setting>), its metric per epoch (mean over seeds; a setting's
    runs are scored by their own metric, `metric` where they name none), one panel per budget;
    the means of every line come from one grouping of all runs' rows."""
    done = chosen[chosen["status"] == "done"]
    keys = [*SETTING, "budget", "schedule"]
    rows = curves.of(done["path"]).merge(done[["path", *keys]], on="path")
    means = rows.groupby([*keys, "epoch"], sort=True)["score"].mean().dropna()
    return {
        f"test_acc_{slug(setting)}": partial(
            _accuracy_curve, setting, group, means, colour, _setting_metric(group, metric)
        )
        for setting, group in done.groupby(SETTING, sort=True)
    }


def _accuracy_curve(
    setting: tuple, group: pd.DataFrame, means: pd.Series, colour: dict, m: Metric
) -> Figure:
    budgets = sorted(group["budget"].unique())
    fig, axes = _grid(len(budgets))
    for ax, budget in zip(axes, budgets, strict=True):
        cell = group[group["budget"] == budget]
        for schedule in sorted(cell["schedule"].unique()):
            try:
                curve = means.loc[(*setting, budget, schedule)]
            except KeyError:
                continue
            ax.plot(
                curve.index,
                m.shown(curve.to_numpy()),
                marker="." if len(curve) < 40 else None,
                color=colour[schedule],
                label=str(schedule),
            )
        epochs = int(cell["epochs"].max())
        ax.set_title(f"budget {100 * budget:g}% ({epochs} epoch{'s' if epochs != 1 else ''})")
        _epoch_axis(ax)
        ax.set_ylabel(m.label)
        ax.grid(alpha=0.3)
    _finish_grid(
        fig, axes, f"{' · '.join(map(str, setting))}: {m.title} per epoch, mean over seeds"
    )
    return fig


def error_vs_budget(summary: pd.DataFrame, colour: dict, metric: str = "error") -> Figure:
    """Per setting, the final metric (mean ± std over seeds) against budget on a log axis."""
    settings = list(summary.groupby(SETTING, sort=True)) or [(("(no runs)",), summary)]
    fig, axes = _grid(len(settings))
    for ax, (setting, group) in zip(axes, settings, strict=True):
        shown_in = _setting_metric(group, metric)
        for schedule, rows in group.groupby("schedule", sort=True):
            rows = rows[np.isfinite(rows["mean_test_acc"])].sort_values("budget")
            ax.errorbar(
                rows["budget"],
                shown_in.shown(rows["mean_test_acc"]),
                yerr=shown_in.shown_spread(rows["std_test_acc"].fillna(0)),
                marker="o",
                capsize=3,
                color=colour[schedule],
                label=str(schedule),
            )
        _budget_axis(ax, sorted(group["budget"].unique()))
        ax.set_title(" · ".join(map(str, setting)))
        ax.set_ylabel(shown_in.label)
        ax.grid(alpha=0.3)
    shown = {_setting_metric(g, metric).title for _, g in settings}
    what = shown.pop() if len(shown) == 1 else "metric (each setting's own)"
    _finish_grid(fig, axes, f"Final {what} against budget (mean ± std over seeds)")
    return fig


def p_top1(summary: pd.DataFrame, colour: dict) -> Figure:
    """Per setting, each schedule's probability of finishing top-1 against budget."""
    settings = list(summary.groupby(SETTING, sort=True)) or [(("(no runs)",), summary)]
    fig, axes = _grid(len(settings))
    for ax, (setting, group) in zip(axes, settings, strict=True):
        for schedule, rows in group.groupby("schedule", sort=True):
            rows = rows[np.isfinite(rows["p_top1"].astype(float))].sort_values("budget")
            ax.plot(
                rows["budget"],
                rows["p_top1"].astype(float),
                marker="o",
                color=colour[schedule],
                label=str(schedule),
            )
        if not group["p_top1"].astype(float).notna().any():
            ax.text(0.5, 0.5, "no P(top-1): fewer than two seeds", ha="center",
                    transform=ax.transAxes)  # fmt: skip
        _budget_axis(ax, sorted(group["budget"].unique()) or [1.0])
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(" · ".join(map(str, setting)))
        ax.set_ylabel("P(top-1) over resamples of the seeds")
        ax.grid(alpha=0.3)
    _finish_grid(
        fig,
        axes,
        "Probability of finishing top-1 (paired bootstrap over seeds; ties count for all)",
    )
    return fig


def error_ratios(summary: pd.DataFrame, metric: str | Metric = "error") -> pd.DataFrame:
    """Per cell (columns) and row name (index), the row's mean cost over the cell's best: the
    metric where lower is better (error, loss), else the test error.

    A row with a diverged seed is never within any factor of the best (inf), as in the ranking;
    a cell whose every row has one is left out. A best cost of 0 makes every other ratio inf.
    """
    ratios: dict[tuple, pd.Series] = {}
    for key, cell in summary.groupby(COMPARED, sort=True):
        cost = _cost(cell, metric).to_numpy()
        clean = (cell["n_diverged"] == 0).to_numpy() & np.isfinite(cost)
        if not clean.any():
            continue
        best = float(cost[clean].min())
        ratio = [_ratio(e, best) if ok else math.inf for e, ok in zip(cost, clean, strict=True)]
        ratios[key] = pd.Series(ratio, index=cell["schedule"].to_numpy())
    return pd.DataFrame(ratios)


def _setting_metric(rows: pd.DataFrame, metric: str | Metric) -> Metric:
    """The metric a setting's rows are shown in: their own, else the report's."""
    if "metric" in rows.columns and len(rows):
        return metric_named(rows["metric"].iloc[0])
    return metric_named(metric)


def _cost(cell: pd.DataFrame, metric: str | Metric = "error") -> pd.Series:
    """What the profile divides, lower is better: the test error (fraction) for rows ranked by
    an accuracy, the loss itself for rows ranked by a loss."""
    scores = cell["mean_test_acc"].astype(float)
    if _setting_metric(cell, metric).column.endswith("_loss"):
        return -scores
    return 1 - scores


def _ratio(error: float, best: float) -> float:
    if best > 0:
        return error / best
    return 1.0 if error == 0 else math.inf


def profile(ratios: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The performance profile: every tau where a curve steps (from 1) and, per row name, the
    fraction of all cells whose ratio is at most tau (a cell the row did not run is missed)."""
    values = ratios.fillna(math.inf).to_numpy(dtype=float)
    taus = np.unique(np.r_[1.0, values[np.isfinite(values)]])
    within = values[:, None, :] <= taus[None, :, None]
    share = within.mean(axis=2) if values.shape[1] else np.zeros((len(values), len(taus)))
    return taus, pd.DataFrame(share, index=ratios.index)


# Curves of a profile often coincide (two schedules best in the same cells): each is drawn in
# its own dash and marker, the first widest, so one on top of another still shows both.
DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def performance_profile(
    summary: pd.DataFrame, colour: dict, metric: str | Metric = "error"
) -> Figure:
    """The Dolan–Moré performance profile over the report's cells: for each tau >= 1, the
    fraction of all cells where a schedule's final cost (test error, or the metric where lower
    is better) is at most tau times the cell's best."""
    m = metric_named(metric)
    what = m.title if m.lower_is_better else "test error"
    ratios = error_ratios(summary, m)
    taus, shares = profile(ratios)
    top = max(1.05, 1.05 * float(taus[-1]))
    fig, (ax,) = _panels((8, 4.8))
    n = len(shares)
    for i, (schedule, share) in enumerate(shares.iterrows()):
        ax.plot(
            np.r_[taus, top],
            np.r_[share.to_numpy(), share.iloc[-1]],
            drawstyle="steps-post",
            color=colour[schedule],
            linestyle=DASHES[i % len(DASHES)],
            linewidth=1.2 + 2.0 * (n - 1 - i) / max(1, n - 1),
            marker=MARKERS[i % len(MARKERS)],
            markevery=[0],  # one marker where the curve starts, at tau = 1
            markersize=7 - 2 * i / max(1, n - 1),
            alpha=0.9,
            label=str(schedule),
        )
    ax.set_xlim(1.0, top)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ ({what} at most τ × the cell's best)")
    ax.set_ylabel(f"fraction of the {ratios.shape[1]} cells")
    ax.set_title(
        f"Performance profile (Dolan–Moré) of the final {what}: higher and further left is better"
    )
    ax.grid(alpha=0.3)
    if len(shares):
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="schedule")
    return fig


def rank_vs_budget(summary: pd.DataFrame, colour: dict) -> Figure:
    """Each schedule's rank averaged over the cells at each budget."""
    fig, (ax,) = _panels((8, 4.8))
    for schedule, rows in summary.groupby("schedule", sort=True):
        mean_rank = rows.groupby("budget")["rank"].mean()
        ax.plot(
            mean_rank.index,
            mean_rank.values,
            marker="o",
            color=colour[schedule],
            label=str(schedule),
        )
    _budget_axis(ax, sorted(summary["budget"].unique()))
    ax.invert_yaxis()
    ax.set_ylabel("mean rank over cells (1 = best, at the top)")
    ax.set_title("Mean rank of each schedule against budget (over all settings)")
    ax.grid(alpha=0.3)
    if len(summary):
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="schedule")
    return fig


def anytime_figure(anytime: Anytime, colour: dict) -> Figure:
    """anytime.png: the best metric so far against the fraction of the budget, a panel per
    cell, mean over seeds (a point only where every seed has a judged epoch by then)."""
    m = anytime.metric
    runs = anytime.runs[anytime.runs["status"] == "done"]
    curves = anytime.best_so_far.merge(runs[["path", *CELL, "schedule"]], on="path")
    seeds = runs.groupby([*CELL, "schedule"]).size().rename("seeds")
    points = curves.groupby([*CELL, "schedule", "x"], sort=True)["best"].agg(["mean", "count"])
    points = points.join(seeds, on=[*CELL, "schedule"])
    points = points[points["count"] == points["seeds"]]["mean"]
    cells = list(runs.groupby(CELL, sort=True))
    fig, axes = _grid(max(1, len(cells)))
    for ax, (cell, group) in zip(axes, cells, strict=False):
        for schedule in sorted(group["schedule"].unique()):
            try:
                mean = points.loc[(*cell, schedule)]
            except KeyError:
                continue
            ax.plot(
                mean.index,
                mean.to_numpy(),
                drawstyle="steps-post",
                marker="." if len(mean) < 40 else None,
                color=colour.get(schedule),
                label=str(schedule),
            )
        tgt = group["target"].iloc[0]
        if math.isfinite(tgt):
            ax.axhline(tgt, color="grey", ls="--", lw=1, label="target")
        dataset, model, optimizer, budget = cell
        ax.set_title(f"{dataset} · {model} · {optimizer}, budget {100 * budget:g}%")
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("fraction of the budget")
        ax.set_ylabel(f"{'lowest' if m.lower_is_better else 'best'} {m.label} so far")
        ax.grid(alpha=0.3)
    if not cells:
        axes[0].set_title("(no finished runs)")
    _finish_grid(
        fig, axes, f"Anytime: best {m.title} so far (mean over seeds; cyclical: at cycle ends)"
    )
    return fig


@dataclass(frozen=True)
class Figures:
    """Every figure of a report, drawn, named for what report.html shows where."""

    error_vs_budget: Plot
    rank_vs_budget: Plot
    p_top1: Plot
    performance_profile: Plot
    lr_curves: Plot
    test_acc: list[Plot]  # one per setting
    anytime: Plot | None

    @classmethod
    def of(cls, plots: list[Plot]) -> Figures:
        named = {plot.name: plot for plot in plots}
        return cls(
            error_vs_budget=named["error_vs_budget"],
            rank_vs_budget=named["rank_vs_budget"],
            p_top1=named["p_top1"],
            performance_profile=named["performance_profile"],
            lr_curves=named["lr_curves"],
            test_acc=[plot for plot in plots if plot.name.startswith("test_acc_")],
            anytime=named.get("anytime"),
        )

    def all(self) -> list[Plot]:
        return [
            self.lr_curves,
            *self.test_acc,
            self.error_vs_budget,
            self.rank_vs_budget,
            self.p_top1,
            self.performance_profile,
            *([self.anytime] if self.anytime is not None else []),
        ]


Build = Callable[[], Figure]


def curve_figures(chosen: pd.DataFrame, curves: Curves) -> dict[str, Build]:
    """How to build the figures drawn from the runs' per-epoch rows, by name (its PNG file's,
    without .png): they need the chosen runs and nothing ranked, so they can be drawn while
    the ranking goes on. A row with a variant is drawn as its own line, named with it."""
    chosen = named_rows(chosen)
    colour = colours(sorted(set(chosen["schedule"])))
    return {
        "lr_curves": partial(lr_curves, chosen, curves, colour),
        **accuracy_curves(chosen, curves, colour),
    }


def anytime_figures(chosen: pd.DataFrame, anytime: Anytime | None) -> dict[str, Build]:
    """How to build the anytime figure (none without an anytime analysis)."""
    if anytime is None:
        return {}
    colour = colours(sorted(set(named_rows(chosen)["schedule"])))  # as curve_figures'
    return {"anytime": partial(anytime_figure, anytime, colour)}


def ranked_figures(
    chosen: pd.DataFrame, summary: pd.DataFrame, metric: str = "error"
) -> dict[str, Build]:
    """How to build the figures of the ranked rows, which need no resampling of the seeds: the
    final metric, the mean rank and the performance profile against budget."""
    summary = named_rows(summary)
    colour = colours(sorted(set(named_rows(chosen)["schedule"])))  # as curve_figures'
    return {
        "error_vs_budget": partial(error_vs_budget, summary, colour, metric),
        "rank_vs_budget": partial(rank_vs_budget, summary, colour),
        "performance_profile": partial(performance_profile, summary, colour, metric),
    }


def resampled_figures(chosen: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Build]:
    """How to build the figure of the paired bootstrap's resamples: P(top-1) against budget."""
    colour = colours(sorted(set(named_rows(chosen)["schedule"])))  # as curve_figures'
    return {"p_top1": partial(p_top1, named_rows(summary), colour)}


def draw_figures(builds: dict[str, Build], processes: int = 0) -> Forked[Plot]:
    """Start drawing figures in up to `processes` forked processes, in the background (they
    are independent, and drawing them is most of a large report's time; 0: here, when their
    results are asked for); Figures.of(drawing.results()) has them. The workers yield the cores
    to the analysis, which the later figures wait for (DRAWING_NICENESS)."""
    names = list(builds)
    return fork_start(lambda name: draw(name, builds[name]()), names, processes, DRAWING_NICENESS)
