"""What keeps a node's console from being the way to slow it down: per-event lines
that keep coming far faster than anyone reads them (a flood) are merged, and printed
lists are cut.

A line has a kind, its template (``"Client {} joined group {}"``).  Each kind has a budget
of lines (a token bucket): ``LINES_AT_ONCE`` at once, ``LINES_PER_SECOND`` on average, so
a few commands in a row print every line and anything faster than a person reads is merged.  A line
beyond the budget is only counted; a second after the first one counted, one line
``... and N more like it in the last second: Client … joined group …`` says how many.
Per event that is a dictionary look-up and a little arithmetic; a line is formatted only
when it is printed.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable, Collection

# Lines of one kind printed a second on average, and at once: about what a person can read, after a
# burst that a few commands typed in a row (or a short script) stay within.  A list's names count.
LINES_PER_SECOND = 20.0
LINES_AT_ONCE = 100.0
WINDOW = 1.0  # seconds over which counted lines are summed up in one line
LIST_SHOWN = 20  # items of a printed list; then "... and N more"
ELLIPSIS = "\u2026"


class _Kind:
    __slots__ = ("credit", "at", "merged")

    def __init__(self, now: float):
        self.credit = LINES_AT_ONCE  # lines of this kind that may be printed now
        self.at = now  # when the credit was last topped up
        self.merged = 0  # lines counted, not printed, since the last summary


class Console:
    """``show(text)`` prints one line; ``call_at(when, callback)`` is the endpoint's timer."""

    def __init__(self, call_at: Callable[[float, Callable[[float], None]], None], show: Callable[[str], None]):
        self._call_at = call_at
        self._show = show
        self._kinds: dict[str, _Kind] = {}  # one per template: a handful

    def event(self, now: float, template: str, *args: str, items: Collection[str] = ()) -> bool:
        """Print ``template`` filled with ``args``, then the first ``items`` (a list that goes
        with the line), unless lines of this kind come too fast; True if printed."""
        kind = self._kinds.get(template)
        if kind is None:
            kind = self._kinds[template] = _Kind(now)
        kind.credit = min(LINES_AT_ONCE, kind.credit + (now - kind.at) * LINES_PER_SECOND)
        kind.at = now
        if kind.credit < 1.0:
            kind.merged += 1
            if kind.merged == 1:
                self._call_at(now + WINDOW, lambda now: self._summarise(template, kind))
            return False
        show = self._show
        show(template.format(*args))
        for item in islice(items, LIST_SHOWN):
            show(item)
        if len(items) > LIST_SHOWN:
            show(f"... and {len(items) - LIST_SHOWN} more")
        kind.credit -= 1 + min(len(items), LIST_SHOWN + 1)
        return True

    def _summarise(self, template: str, kind: _Kind) -> None:
        like = template.format(*(ELLIPSIS,) * template.count("{}"))
        self._show(f"... and {kind.merged} more like it in the last second: {like}")
        kind.merged = 0
