"""Tables for a reader: rows of cells under column names, drawn with rich (on a terminal) or
as aligned plain text (a long table, a pipe).  The nodes' terminal and the tools draw theirs
here.  Every cell is shown as the text it is: escaped (node/text.py), never read as markup."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from .text import escaped, rich_text


def plain_grid(columns: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    """The column names, then a line per row, each column as wide as its widest cell."""
    lines = [tuple(columns), *(tuple(escaped(str(cell)) for cell in row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return ["    " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]


def rich_grid(columns: Sequence[str], rows: Iterable[Sequence], right: Iterable[str] = (),
              row_style: Callable[[Sequence], str | None] | None = None, **options):
    """A rich Table of ``columns`` (those named in ``right`` aligned right: numbers) and ``rows``;
    ``row_style(row)`` styles a row; ``options`` go to the Table (title, box, ...)."""
    from rich.table import Table  # imported late: start-up time matters for --help

    right = frozenset(right)
    grid = Table(**options)
    for column in columns:
        grid.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        grid.add_row(*(rich_text(str(cell)) for cell in row), style=row_style(row) if row_style else None)
    return grid
