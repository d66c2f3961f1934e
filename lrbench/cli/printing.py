"""Tables printed whole: a terminal gets its own width, a pipe or log file the table's."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.markup import escape


def print_whole(table: RenderableType, console: Console | None = None) -> None:
    """Print `table`; to a pipe or file at its natural width (rich would squeeze it into 80
    columns and cut run ids and sweep names that scripts and logs need whole)."""
    console = console or Console()
    if not console.is_terminal:
        wide = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=wide, file=console.file)
    console.print(table)


def literal(text: object) -> str:
    """Text from a file or folder name, ready for rich's markup: printed as it is (brackets
    are not markup) with control characters escaped (no escape sequence reaches the terminal)."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return escape(shown)
