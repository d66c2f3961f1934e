"""Tables printed whole: a terminal gets its own width, a pipe or log file the table's."""

from __future__ import annotations

from rich.console import Console, RenderableType


def print_whole(table: RenderableType, console: Console | None = None) -> None:
    """Print `table`; to a pipe or file at its natural width (rich would squeeze it into 80
    columns and cut run ids and sweep names that scripts and logs need whole)."""
    console = console or Console()
    if not console.is_terminal:
        wide = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=wide, file=console.file)
    console.print(table)
