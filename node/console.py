"""What keeps a node's console from being the way to slow it down: per-event lines
that come faster than a person can read are merged, and printed lists are cut.

A line has a kind, its template (``"Client {} joined group {}"``).  The first line of
a kind opens a one-second window; up to ``LINES_PER_SECOND`` lines of that kind are
printed in it, the rest are only counted, and when the window ends one line
``... and N more like it in the last second: Client … joined group …`` says how many.
The next line of that kind opens a new window.  Per event that is a dictionary look-up
and a comparison; a line is formatted only when it is printed.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable, Collection

LINES_PER_SECOND = 5  # lines of one kind printed per window; the rest are counted
WINDOW = 1.0  # seconds
LIST_SHOWN = 20  # items of a printed list; then "... and N more"
ELLIPSIS = "\u2026"


class _Kind:
    __slots__ = ("ends", "shown", "merged")

    def __init__(self, ends: float):
        self.ends = ends  # when this kind's window closes
        self.shown = 0  # lines printed in it
        self.merged = 0  # lines only counted in it


class Console:
    """``show(text)`` prints one line; ``call_at(when, callback)`` is the endpoint's timer."""

    def __init__(self, call_at: Callable[[float, Callable[[float], None]], None], show: Callable[[str], None]):
        self._call_at = call_at
        self._show = show
        self._kinds: dict[str, _Kind] = {}

    def event(self, now: float, template: str, *args: str, items: Collection[str] = ()) -> bool:
        """Print ``template`` filled with ``args``, then the first ``items`` (a list that goes
        with the line), unless lines of this kind come too fast; True if printed."""
        kind = self._kinds.get(template)
        if kind is None or now >= kind.ends:
            kind = self._kinds[template] = _Kind(now + WINDOW)
        if kind.shown >= LINES_PER_SECOND:
            kind.merged += 1
            if kind.merged == 1:
                self._call_at(kind.ends, lambda now: self._summarise(template, kind))
            return False
        kind.shown += 1
        show = self._show
        show(template.format(*args))
        for item in islice(items, LIST_SHOWN):
            show(item)
        if len(items) > LIST_SHOWN:
            show(f"... and {len(items) - LIST_SHOWN} more")
        return True

    def _summarise(self, template: str, kind: _Kind) -> None:
        like = template.format(*(ELLIPSIS,) * template.count("{}"))
        self._show(f"... and {kind.merged} more like it in the last second: {like}")
        if self._kinds.get(template) is kind:
            del self._kinds[template]  # the next line of this kind opens a new window
