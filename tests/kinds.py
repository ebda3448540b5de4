"""The kinds of test and the marks that follow from them (applied by conftest.py, checked by
tests/unit/test_layout.py).

Each test module lives in the directory of its kind, and a test carries the mark of that kind.
A test also carries ``e2e`` when it starts processes or opens real sockets: because it is in
tests/e2e, because it uses a fixture that does (``LIVE_FIXTURES``), or because its module marks
it (``pytestmark = pytest.mark.e2e``).  So ``-m "not e2e"`` is the fast loop, in-process only;
tests/in_process.py fails any test outside it that starts a process or opens such a socket."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent

KINDS = ("unit", "integration", "e2e", "security", "bench")
E2E = "e2e"  # a kind, and the mark of every test that starts processes or opens real sockets

# Fixtures (conftest.py) that start processes or open real sockets, directly or through another.
LIVE_FIXTURES = frozenset({"cluster", "peers", "tools", "direct", "proxied"})

# Marked tests that run only when asked for by name: -m soak (or any -m naming it).
SOAK = "soak"


def kind_of(path: Path) -> str | None:
    """The kind of the test module at ``path``: the directory below tests/ it is in, if a kind."""
    path = path.resolve()
    parts = path.relative_to(TESTS).parts if path.is_relative_to(TESTS) else ()
    return parts[0] if len(parts) > 1 and parts[0] in KINDS else None


def marks_for(path: Path, fixtures: list[str] | tuple[str, ...]) -> list[str]:
    """The marks of a test in the module at ``path`` that uses ``fixtures`` (with those they use)."""
    kind = kind_of(path)
    marks = [kind] if kind else []
    if kind != E2E and LIVE_FIXTURES.intersection(fixtures):
        marks.append(E2E)
    return marks


def soak_asked(markexpr: str) -> bool:
    """Whether ``-m`` names the soak mark; otherwise soak tests are deselected."""
    return SOAK in markexpr.replace("(", " ").replace(")", " ").split()
