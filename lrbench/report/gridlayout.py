"""Panels of one size on a grid, with a figure legend to their right, laid out from one measure
of what sits around them.

matplotlib's constrained layout measures every panel's ticks, labels and title twice before a
figure is drawn, and was a quarter of the time a report's grids of panels took to draw. The
panels of a grid are alike (one font, one line of title, one of each axis label), so every
panel gets the same margins, from texts measured once: every panel's y tick labels (their width
differs from panel to panel), its axis labels and title, and one panel's x tick labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from matplotlib import rcParams
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

PAD = 0.06  # inches left free around each thing placed
TICK_WIDTH_GUESS = 0.4  # inches, for placing the panels before their tick labels are measured


@dataclass(frozen=True)
class Margins:
    """Inches around each panel (left, right, bottom, top), and at the figure's top (the
    suptitle) and right (the legend)."""

    left: float
    right: float
    bottom: float
    top: float
    suptitle: float
    legend: float


def lay_out_grid(fig: Figure, axes: list, title: Text | None) -> None:
    """Place `axes` (the visible panels of one rows × cols grid) in equal cells of the figure,
    below its `title` (the suptitle) and left of the figure's legend (if any, centred at the
    right). The y tick labels are measured where the panels will be, so that their number and
    widths are the drawn ones. A panel's title is one line, not measured across: it may reach
    past its panel into the space between panels (0.9 inch and more), as far as that goes."""
    if not axes:
        return
    rows, cols = axes[0].get_subplotspec().get_gridspec().get_geometry()
    if title is not None:  # its top PAD below the figure's
        title.set(y=1 - PAD / fig.get_size_inches()[1], verticalalignment="top")
    renderer = RendererAgg(1, 1, fig.dpi)
    guessed = _margins(fig, axes, title, renderer, TICK_WIDTH_GUESS)
    _place(fig, axes, rows, cols, guessed)
    tick_width = _extent(renderer, fig, (t for ax in axes for t in ax.get_yticklabels()))[0]
    _place(
        fig, axes, rows, cols, replace(guessed, left=guessed.left - TICK_WIDTH_GUESS + tick_width)
    )


def _extent(renderer: RendererAgg, fig: Figure, texts: Iterable[Text]) -> tuple[float, float]:
    """The widest and tallest of the shown texts, in inches."""
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]
    return (
        max((b.width for b in boxes), default=0.0) / fig.dpi,
        max((b.height for b in boxes), default=0.0) / fig.dpi,
    )


def _margins(
    fig: Figure, axes: list, title: Text | None, renderer: RendererAgg, tick_width: float
) -> Margins:
    """The margins the panels' decorations need, for y tick labels `tick_width` inches wide."""
    points = 1 / 72
    xtick = (rcParams["xtick.major.size"] + rcParams["xtick.major.pad"]) * points
    ytick = (rcParams["ytick.major.size"] + rcParams["ytick.major.pad"]) * points
    label_pad = rcParams["axes.labelpad"] * points
    tick_height = _extent(renderer, fig, axes[0].get_xticklabels())[1]
    ylabel = _extent(renderer, fig, (ax.yaxis.label for ax in axes))[0]  # upright: width across
    xlabel = _extent(renderer, fig, (ax.xaxis.label for ax in axes))[1]
    panel_title = _extent(renderer, fig, (ax.title for ax in axes))[1]
    suptitle = _extent(renderer, fig, [title] if title is not None else [])[1]
    legend = max((leg.get_window_extent(renderer).width for leg in fig.legends), default=0.0)
    return Margins(
        left=ylabel + label_pad + tick_width + ytick + 2 * PAD,
        right=0.2,  # the last x tick label, centred on the panel's right edge
        bottom=tick_height + xtick + xlabel + label_pad + 2 * PAD,
        top=panel_title + rcParams["axes.titlepad"] * points + PAD,
        suptitle=suptitle + 2 * PAD if suptitle else PAD,
        legend=legend / fig.dpi + 2 * PAD if legend else PAD,
    )


def _place(fig: Figure, axes: list, rows: int, cols: int, m: Margins) -> None:
    """Each panel in its cell of the grid, inside the margins."""
    width, height = fig.get_size_inches()
    cell_w = (width - m.legend) / cols
    cell_h = (height - m.suptitle) / rows
    panel_w = max(cell_w - m.left - m.right, 0.1 * cell_w)
    panel_h = max(cell_h - m.bottom - m.top, 0.1 * cell_h)
    for ax in axes:
        spec = ax.get_subplotspec()
        row, col = spec.rowspan.start, spec.colspan.start
        x0 = col * cell_w + m.left
        y0 = height - m.suptitle - row * cell_h - m.top - panel_h
        ax.set_position([x0 / width, y0 / height, panel_w / width, panel_h / height])
