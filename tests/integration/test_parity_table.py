"""docs/toolkit-parity.md against the suite: every feature we claim names a test that runs it, and
each of those tests exists where tests run real sockets and processes."""

from __future__ import annotations

import ast
import re

from tests.procs import ROOT

DOC = ROOT / "docs" / "toolkit-parity.md"
REFERENCE = re.compile(r"`(tests/(?:e2e|integration)/test_\w+\.py)::(test_\w+)`")


def table_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not line.startswith("| ---") and not line.startswith("| feature"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip("|"))])
    return rows


def functions_in(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_feature_we_claim_names_tests_that_exist_and_run_real_processes():
    rows = table_rows()
    assert len(rows) > 30, "the tables were not found"
    missing = []
    for row in rows:
        ours, run_by = row[-2], row[-1]
        assert ours and ours != "none", row
        references = REFERENCE.findall(run_by)
        assert references and len(references) == run_by.count("::"), f"a test under tests/e2e or tests/integration for: {row[0]}"
        missing += [f"{path}::{name}" for path, name in references if name not in functions_in(path)]
    assert not missing, missing
