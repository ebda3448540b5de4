"""What keeps a node's console from being the way to slow it down: per-event lines
that keep coming far faster than anyone reads them (a flood) are merged, and printed
lists are cut.

A line's kind is its event's type (``GroupJoined``).  Each kind has a budget of lines (a
token bucket): ``LINES_AT_ONCE`` at once, ``LINES_PER_SECOND`` on average, so a few commands
in a row print every line and anything faster than a person reads is merged.  An event
beyond the budget is only counted, never made; a second after the first one counted, a
``LinesMerged`` event says how many (``... and N more like it in the last second: Client …
joined group …``).  Per event that is a dictionary look-up and a little arithmetic.
"""

from __future__ import annotations

from typing import Callable, Sized

from .events import LinesMerged

# Lines of one kind printed a second on average, and at once: about what a person can read, after a
# burst that a few commands typed in a row (or a short script) stay within.  A list's names count.
LINES_PER_SECOND = 20.0
LINES_AT_ONCE = 100.0
WINDOW = 1.0  # seconds over which counted lines are summed up in one line
LIST_SHOWN = 20  # items of a printed list; then "... and N more"


class _Kind:
    __slots__ = ("credit", "at", "merged")

    def __init__(self, now: float):
        self.credit = LINES_AT_ONCE  # lines of this kind that may be printed now
        self.at = now  # when the credit was last topped up
        self.merged = 0  # events counted, not made, since the last summary


class Console:
    """``emit(event)`` puts out an event to print; ``call_at(when, callback)`` is the endpoint's timer."""

    def __init__(self, call_at: Callable[[float, Callable[[float], None]], None], emit: Callable[[object], None]):
        self._call_at = call_at
        self._emit = emit
        self._kinds: dict[type, _Kind] = {}  # one per event type: a handful

    def event(self, now: float, kind: type, *fields, items: Sized = ()) -> bool:
        """Emit ``kind(*fields)`` (an event whose line goes with ``items``, a list printed below it,
        cut to LIST_SHOWN), unless events of this kind come too fast; True if emitted."""
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = _Kind(now)
        state.credit = min(LINES_AT_ONCE, state.credit + (now - state.at) * LINES_PER_SECOND)
        state.at = now
        if state.credit < 1.0:
            state.merged += 1
            if state.merged == 1:
                self._call_at(now + WINDOW, lambda now: self._summarise(kind, state))
            return False
        self._emit(kind(*fields))
        state.credit -= 1 + min(len(items), LIST_SHOWN + 1)
        return True

    def _summarise(self, kind: type, state: _Kind) -> None:
        self._emit(LinesMerged(kind, state.merged))
        state.merged = 0
