"""node/grids.py: the one way tables are drawn, by the nodes' terminal and by the tools."""

from __future__ import annotations

import io

from rich.console import Console

from node.grids import plain_grid, rich_grid


def test_a_plain_grid_aligns_each_column_to_its_widest_cell_and_escapes_cells():
    lines = plain_grid(("name", "port"), [("Ann", 7001), ("Bartholomew\x1b[2J", 12)])
    assert lines == [
        "    name                port",
        "    Ann                 7001",
        "    Bartholomew\\x1b[2J  12",
    ]


def test_a_rich_grid_aligns_the_named_columns_right_and_styles_rows():
    grid = rich_grid(("name", "n"), [("Ann", 3), ("Bob", 12)], ("n",), row_style=lambda row: "dim" if row[1] == 12 else None,
                     title="t")
    assert [column.justify for column in grid.columns] == ["left", "right"]
    assert [row.style for row in grid.rows] == [None, "dim"]
    console = Console(record=True, width=60, file=io.StringIO())
    console.print(grid)
    text = console.export_text()
    assert " 3 │" in text and "12 │" in text and "Ann" in text
