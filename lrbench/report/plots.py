"""PNG figures for the report, drawn with matplotlib's Agg renderer.

Figures are built with matplotlib.figure.Figure rather than pyplot: no global backend or
figure registry, so the report runs headless and leaves the caller's matplotlib state alone.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lrbench.report.rank import SETTING
from lrbench.schedules import ScheduleError, build_schedule

DPI = 120


def slug(parts: tuple[str, ...] | list[str]) -> str:
    """A file-name-safe name for a setting, e.g. cifar10-resnet20-sgd."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts))


def colours(schedules: list[str]) -> dict[str, tuple[float, ...]]:
    """One colour per schedule, the same in every figure."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(schedules) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(sorted(schedules))}


def _grid(n: int, width: float = 4.6, height: float = 3.4) -> tuple[Figure, list]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols + 1.8, height * rows + 0.6), layout="constrained", dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, axes: list) -> None:
    handles: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        fig.legend(
            list(handles.values()), list(handles), loc="outside right center", title="schedule"
        )


def _epoch_axis(ax) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _budget_axis(ax, budgets: list[float]) -> None:
    """Log x axis ticked at the budgets actually run, labelled as percentages."""
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{100 * b:g}%" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("budget (% of full training, log scale)")


def _curve(curves: dict[str, pd.DataFrame], paths: list[str], column: str) -> pd.Series:
    """Mean over the given runs of one metrics column, per epoch."""
    frames = [curves[p][["epoch", column]] for p in paths if p in curves and column in curves[p]]
    if not frames:
        return pd.Series(dtype=float)
    return pd.concat(frames).groupby("epoch")[column].mean().dropna()


def step_rates(run: pd.Series) -> pd.Series | None:
    """The rate of every step of a run, indexed by epochs ((step + 1) / steps per epoch), rebuilt
    from its spec (schedules are pure functions of it); None where this version cannot: a schedule
    it does not know, one that reacts to metrics or is the user's own code (the report never runs
    it: the rates are in metrics.csv), or no steps_per_epoch in spec.json."""
    try:
        spe = float(run["steps_per_epoch"])
        schedule = build_schedule(json.loads(run["schedule_params"]), imports=False)
    except (ScheduleError, ValueError, TypeError):
        return None
    if not spe > 0:  # NaN too
        return None
    if schedule.reactive or schedule.user_code:
        return None
    spe, total = int(spe), int(run["epochs"] * spe)
    rates = run["lr"] * schedule.multipliers(total, spe)
    return pd.Series(rates, index=np.arange(1, total + 1) / spe)


def lr_curves(
    chosen: pd.DataFrame, curves: dict[str, pd.DataFrame], out: Path, colour: dict
) -> Path:
    """Each schedule's rate from one run at its largest budget, one panel per optimizer: every
    step where the schedule can be rebuilt from its spec, else the last step of each epoch as
    metrics.csv has it (reactive, imported or unknown schedules: dots)."""
    done = chosen[chosen["path"].isin(curves.keys())]
    optimizers = sorted(done["optimizer"].unique()) or ["(no runs)"]
    fig, axes = _grid(len(optimizers), width=5.5)
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
            if curve is not None:  # step t's rate holds from epoch t/spe to (t+1)/spe
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
        if runs.size:
            ax.legend(fontsize="small")
    path = out / "lr_curves.png"
    fig.savefig(path)
    return path


def accuracy_curves(
    chosen: pd.DataFrame, curves: dict[str, pd.DataFrame], out: Path, colour: dict
) -> list[Path]:
    """Per setting, test accuracy per epoch (mean over seeds), one panel per budget."""
    paths = []
    done = chosen[chosen["status"] == "done"]
    for setting, group in done.groupby(SETTING, sort=True):
        budgets = sorted(group["budget"].unique())
        fig, axes = _grid(len(budgets))
        for ax, budget in zip(axes, budgets, strict=True):
            cell = group[group["budget"] == budget]
            for schedule, runs in cell.groupby("schedule", sort=True):
                curve = _curve(curves, list(runs["path"]), "test_acc") * 100
                ax.plot(
                    curve.index,
                    curve.values,
                    marker="." if len(curve) < 40 else None,
                    color=colour[schedule],
                    label=str(schedule),
                )
            epochs = int(cell["epochs"].max())
            ax.set_title(f"budget {100 * budget:g}% ({epochs} epoch{'s' if epochs != 1 else ''})")
            _epoch_axis(ax)
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
        fig.suptitle(f"{' · '.join(map(str, setting))}: test accuracy per epoch, mean over seeds")
        _legend(fig, axes)
        path = out / f"test_acc_{slug(setting)}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


def error_vs_budget(summary: pd.DataFrame, out: Path, colour: dict) -> Path:
    """Per setting, final test error (mean ± std over seeds) against budget on a log axis."""
    settings = list(summary.groupby(SETTING, sort=True)) or [(("(no runs)",), summary)]
    fig, axes = _grid(len(settings))
    for ax, (setting, group) in zip(axes, settings, strict=True):
        for schedule, rows in group.groupby("schedule", sort=True):
            rows = rows[np.isfinite(rows["mean_test_acc"])].sort_values("budget")
            ax.errorbar(
                rows["budget"],
                100 * (1 - rows["mean_test_acc"]),
                yerr=100 * rows["std_test_acc"].fillna(0),
                marker="o",
                capsize=3,
                color=colour[schedule],
                label=str(schedule),
            )
        _budget_axis(ax, sorted(group["budget"].unique()))
        ax.set_title(" · ".join(map(str, setting)))
        ax.set_ylabel("test error (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Final test error against budget (mean ± std over seeds)")
    _legend(fig, axes)
    path = out / "error_vs_budget.png"
    fig.savefig(path)
    return path


def rank_vs_budget(summary: pd.DataFrame, out: Path, colour: dict) -> Path:
    """Each schedule's rank averaged over the cells at each budget."""
    fig = Figure(figsize=(8, 4.8), layout="constrained", dpi=DPI)
    ax = fig.subplots()
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
    path = out / "rank_vs_budget.png"
    fig.savefig(path)
    return path


def all_plots(
    chosen: pd.DataFrame, summary: pd.DataFrame, curves: dict[str, pd.DataFrame], out: Path
) -> list[Path]:
    colour = colours(sorted(set(summary["schedule"]) | set(chosen["schedule"])))
    return [
        lr_curves(chosen, curves, out, colour),
        *accuracy_curves(chosen, curves, out, colour),
        error_vs_budget(summary, out, colour),
        rank_vs_budget(summary, out, colour),
    ]
