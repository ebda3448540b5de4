"""The layout of tests/ (tests/kinds.py): every test module in the directory of its kind, none
importing another, the marks registered and applied, and a test outside e2e kept in-process."""

from __future__ import annotations

import ast
import socket
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests import kinds
from tests.in_process import GUARD, NotInProcess

MODULES = sorted(path for pattern in ("test_*.py", "*_test.py") for path in kinds.TESTS.rglob(pattern))
TEST_NAME = "test_"  # a module whose last dotted part starts so is a test module


def where(path: Path) -> str:
    return str(path.relative_to(kinds.TESTS.parent))


def imported_modules(path: Path) -> list[str]:
    """The modules ``path`` imports, a relative import as its dots and name ("..x")."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names.append(module)
            joint = "" if module.endswith(".") else "."
            names += [f"{module}{joint}{alias.name}" for alias in node.names]  # from tests import test_x
    return names


def test_the_modules_of_every_kind_are_found():
    assert Path(__file__).resolve() in MODULES
    assert {kinds.kind_of(path) for path in MODULES} == set(kinds.KINDS)


def test_every_test_module_is_in_the_directory_of_its_kind():
    astray = [where(path) for path in MODULES if kinds.kind_of(path) is None]
    assert not astray, f"move each into one of tests/{{{','.join(kinds.KINDS)}}}/: {astray}"


def test_no_two_test_modules_share_a_name():
    """pytest imports a test module by its file name (rootdir-based, no __init__.py): two alike in
    different directories would clash at collection."""
    names = Counter(path.name for path in MODULES)
    assert not [name for name, count in names.items() if count > 1]


def test_no_module_in_tests_imports_a_test_module():
    """Shared pieces live in helper modules (tests/procs.py ...) and fixtures in conftest.py."""
    found = [
        (where(path), name)
        for path in sorted(kinds.TESTS.rglob("*.py"))
        for name in imported_modules(path)
        if name.rpartition(".")[2].startswith(TEST_NAME) or name.endswith("_test")
    ]
    assert not found


def test_a_test_module_importing_another_is_found(tmp_path):
    offender = tmp_path / "test_x.py"
    offender.write_text("import os\nfrom tests.unit.test_proto import packets\nfrom . import test_y\n")
    names = imported_modules(offender)
    assert "tests.unit.test_proto" in names and ".test_y" in names and "os" in names


def test_every_mark_is_registered_and_unknown_ones_are_errors(pytestconfig):
    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert {*kinds.KINDS, kinds.SOAK} <= registered
    assert pytestconfig.option.strict_markers or "--strict-markers" in pytestconfig.getini("addopts")


@pytest.mark.parametrize("where, fixtures, marks", [
    ("unit/test_x.py", [], ["unit"]),
    ("unit/test_x.py", ["tmp_path", "cluster"], ["unit", "e2e"]),
    ("security/test_x.py", ["peers"], ["security", "e2e"]),
    ("integration/test_x.py", ["direct"], ["integration", "e2e"]),
    ("e2e/test_x.py", [], ["e2e"]),
    ("e2e/test_x.py", ["cluster"], ["e2e"]),
    ("bench/test_x.py", ["tmp_path"], ["bench"]),
    ("test_x.py", ["cluster"], ["e2e"]),  # astray (failed above), still kept out of the fast loop
    ("../test_x.py", [], []),  # outside tests/, named on the command line
])
def test_marks_follow_the_directory_and_the_fixtures(where, fixtures, marks):
    assert kinds.marks_for(kinds.TESTS / where, fixtures) == marks


def test_this_test_carries_the_mark_of_its_kind_and_no_other(request):
    assert request.node.get_closest_marker("unit") is not None
    assert [kind for kind in (*kinds.KINDS, kinds.SOAK) if request.node.get_closest_marker(kind)] == ["unit"]


@pytest.mark.parametrize("expression, asked", [
    ("", False), ("not e2e", False), ("soak", True), ("soak and not e2e", True), ("(soak)", True), ("soaked", False),
])
def test_soak_tests_run_only_when_m_names_them(expression, asked):
    assert kinds.soak_asked(expression) is asked


def test_a_test_outside_e2e_can_neither_open_a_real_socket_nor_start_a_process():
    with pytest.raises(NotInProcess, match="opened an AF_INET socket but is not marked e2e"):
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(NotInProcess, match=r"started a process \(subprocess.Popen\)"):
        subprocess.run(["true"])
    local, other = socket.socketpair()  # AF_UNIX, as asyncio's loop opens one: in-process
    local.close(), other.close()
    # Taken here, so that they do not fail this test after it passed (conftest.py).
    assert GUARD.take() == ["opened an AF_INET socket", "started a process (subprocess.Popen)"]
