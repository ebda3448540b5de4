"""Scenario files: fault rules scheduled in time, so a test or a demo can script an outage.

A scenario is a text file, one line per rule, ``#`` for comments, in time order:

    at 3s for 8s: drop from=Ann       # Ann cut off from everyone for 8 s ...
    at 3s for 8s: drop to=Ann
    at 11s: clear                     # ... then healed (a phase without rules)
    at 20s: delay 200ms type=grp_msg  # from 20 s on, until the proxy stops

``at T[ for D]: RULE`` puts RULE (the proxy's rule grammar, tools/faults.py) in force T after the
scenario started (the proxy's start) and for D, if given.  Lines with the same T make one phase;
a phase ends where the next one begins, so phases never overlap and the usual first-match order
holds within each.  ``at T: clear`` begins a phase without rules: every datagram passes.

Each line becomes an ordinary rule with a ``during=`` window (``drop from=Ann during=3s..11s``),
so the proxy and the simulator run a scenario as they run any rule.  ``phases()`` lists the
moments what is in force changes, for the proxy to announce them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from tools.faults import Rule, RuleError, parse_duration

LINE = re.compile(r"at\s+(?P<at>\S+)(?:\s+for\s+(?P<for>\S+))?\s*:\s*(?P<rule>.*)")
FORM = "'at TIME: RULE', 'at TIME for DURATION: RULE' or 'at TIME: clear'"


class ScenarioError(ValueError):
    """A scenario that does not parse; the message names the file and the line."""


@dataclass(frozen=True)
class Step:
    """One line of a scenario: its rule (None for ``clear``) from ``at`` for ``length`` seconds."""

    line: int
    at: float
    length: float  # math.inf: until the next phase
    rule: str | None


@dataclass(frozen=True)
class Phase:
    """A moment what is in force changes: seconds after the start, and the lines in force from then on."""

    at: float
    steps: tuple[Step, ...]

    def describe(self) -> str:
        if not self.steps:
            return f"at {self.at:g}s: no rules, every datagram passes"
        return f"at {self.at:g}s: " + "; ".join(f"{s.rule} (line {s.line})" for s in self.steps)


class Scenario:
    def __init__(self, steps: list[Step]):
        self.steps = steps
        starts = sorted({s.at for s in steps})
        # Each line's rule holds until its `for` is up or the next phase begins, whichever is first.
        self._until = {s: min(s.at + s.length, next((t for t in starts if t > s.at), math.inf)) for s in steps}

    def rules(self) -> list[Rule]:
        """The scenario as rules with windows, fresh (counters at zero), in file order."""
        rules = []
        for step in self.steps:
            if step.rule is not None:
                rule = Rule.parse(step.rule)  # parsed once already: it parses
                until = self._until[step]
                rule.window, rule.timed = (step.at, until), True
                rule.text += f" during={step.at:g}s..{'' if until == math.inf else f'{until:g}s'}"  # as --stats shows it
                rules.append(rule)
        return rules

    def phases(self) -> list[Phase]:
        """Every moment what is in force changes, in time order (the first at the first line's time)."""
        moments = sorted({s.at for s in self.steps} | {u for u in self._until.values() if u != math.inf})
        phases: list[Phase] = []
        for t in moments:
            steps = tuple(s for s in self.steps if s.rule is not None and s.at <= t < self._until[s])
            if not phases or phases[-1].steps != steps:
                phases.append(Phase(t, steps))
        return phases


def parse(text: str, source: str = "scenario") -> Scenario:
    """The scenario in ``text``; ScenarioError naming ``source`` and the line if it does not parse."""
    steps: list[Step] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            step = _step(line, number)
        except RuleError as exc:
            raise ScenarioError(f"{source}:{number}: {exc}") from None
        if steps and step.at < steps[-1].at:
            raise ScenarioError(
                f"{source}:{number}: at {step.at:g}s comes after at {steps[-1].at:g}s (line {steps[-1].line}): "
                "put the lines in time order"
            )
        steps.append(step)
    if not steps:
        raise ScenarioError(f"{source}: no lines (expected {FORM})")
    return Scenario(steps)


def load(path: str | Path) -> Scenario:
    """The scenario in the file at ``path``; ScenarioError (also for a file that cannot be read)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc}") from None
    return parse(text, str(path))


def _step(line: str, number: int) -> Step:
    m = LINE.fullmatch(line)
    if not m:
        raise RuleError(f"expected {FORM}, got '{line}'")
    at = parse_duration(m["at"], line)
    length = parse_duration(m["for"], line) if m["for"] else math.inf
    if length <= 0:
        raise RuleError(f"'for {m['for']}' in '{line}' must be longer than 0")
    text = m["rule"].strip()
    if not text:
        raise RuleError(f"no rule after ':' in '{line}' (write 'clear' for a phase without rules)")
    if text == "clear":
        if m["for"]:
            raise RuleError(f"'clear' takes no 'for' in '{line}' (it lasts until the next phase)")
        return Step(number, at, length, None)
    rule = Rule.parse(text)
    if rule.timed:
        raise RuleError(f"a scenario line takes its time from 'at', not from during= or since=, in '{line}'")
    return Step(number, at, length, text)
