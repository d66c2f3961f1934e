"""Tables printed whole: a terminal gets its own width, a pipe or log file the table's."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def print_whole(table: RenderableType, console: Console | None = None) -> None:
    """Print `table`; to a pipe or file at its natural width (rich would squeeze it into 80
    columns and cut run ids and sweep names that scripts and logs need whole)."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        wide = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=wide, file=console.file)
    console.print(table)


def print_columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows as plain aligned columns, in one write: a plan of 10^5 runs prints in a fraction of
    a second (a rich table measures every cell and takes minutes), and stays greppable."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    sys.stdout.write("".join(line.format(*r).rstrip() + "\n" for r in [header, *rows]))
    sys.stdout.flush()


def literal(text: object) -> str:
    """Text from a file or folder name, ready for rich's markup: printed as it is (brackets
    are not markup) with control characters escaped (no escape sequence reaches the terminal)."""
    from rich.markup import escape

    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return escape(shown)
