"""What a user reads for one item a logic's ``drain`` returned, as lines the tests compare:
an event through ``node.render.render`` (a table as its title and ``| cell | cell`` rows)."""

from __future__ import annotations

from node.effects import Exit, Send
from node.render import Table, render


def shown(item) -> list[str]:
    """The lines ``item`` prints; none for a datagram or an exit."""
    if isinstance(item, (Send, Exit)):
        return []
    out = render(item)
    if isinstance(out, Table):
        return [out.title, *("| " + " | ".join(row) for row in out.rows)]
    return out
