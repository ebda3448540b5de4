"""What a user reads for one item a logic's ``drain`` returned, as lines the tests compare:
an event through ``node.render.render`` (a table as its title and ``| cell | cell`` rows),
or the ``Show``/``ShowTable`` of a logic that still prints text itself."""

from __future__ import annotations

from node.effects import Exit, Send, Show, ShowTable
from node.render import Table, render


def shown(item) -> list[str]:
    """The lines ``item`` prints; none for a datagram or an exit."""
    if isinstance(item, (Send, Exit)):
        return []
    if isinstance(item, Show):
        return [item.text]
    out = item if isinstance(item, ShowTable) else render(item)
    if isinstance(out, (Table, ShowTable)):
        return [out.title, *("| " + " | ".join(row) for row in out.rows)]
    return out
