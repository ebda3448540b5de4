"""tools/cli.py, the command-line pieces ChatApp.py and the tools share: the parser and its exit
status, and the argument types (ports, positive numbers, durations)."""

from __future__ import annotations

import argparse
import io
import math
import subprocess

import pytest

from tests.procs import PYTHON, ROOT
from node.grids import rich_grid
from tools.cli import Parser, port, positive, seconds


def test_a_usage_error_is_the_usage_then_one_line_and_the_parsers_status(capsys):
    for status in (1, 2):
        parser = Parser(prog="chat", status=status)
        parser.add_argument("--n", type=positive(int))
        with pytest.raises(SystemExit) as exit:
            parser.parse_args(["--n", "0"])
        assert exit.value.code == status
        err = capsys.readouterr().err.splitlines()
        assert err == ["usage: chat [-h] [--n N]", "chat: error: argument --n: '0' is not a positive number"]


@pytest.mark.parametrize("text", ["0", "-1", "nan", "NaN", "x", ""])
def test_positive_refuses_what_is_not_above_zero(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a positive number"):
        positive(float)(text)


def test_positive_takes_numbers_above_zero_of_its_kind():
    assert positive(float)("0.25") == 0.25
    assert positive(int)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError):
        positive(int)("0.5")


@pytest.mark.parametrize("text", ["0", "65536", "-1", "x", ""])
def test_port_refuses_what_is_no_udp_port(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a UDP port"):
        port(text)


@pytest.mark.parametrize("word, value", [("300ms", 0.3), ("1.5s", 1.5), ("2", 2.0), ("0", 0.0)])
def test_seconds_reads_the_duration_words(word, value):
    assert math.isclose(seconds(word), value)


@pytest.mark.parametrize("word", ["", "ms", "1.", ".5", "-1", "1h", "1 s", "nan"])
def test_seconds_refuses_other_words(word):
    with pytest.raises(ValueError):
        seconds(word)


@pytest.mark.e2e  # runs sniff.py
def test_sniff_refuses_a_timeout_that_is_not_a_number():
    """A NaN is no positive number: sniff.py took it once (it only refused values <= 0)."""
    done = subprocess.run([PYTHON, str(ROOT / "tools" / "sniff.py"), "-r", "x.pcap", "--timeout", "nan"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "sniff.py: error: argument --timeout: 'nan' is not a positive number"


def test_a_table_shows_its_cells_as_written_never_as_markup():
    from rich.console import Console

    console = Console(record=True, width=100, file=io.StringIO())
    console.print(rich_grid(("name", "n"), [("[bold]Ann[/bold]", 3), ("Bob\x1b[31m", 12)], ("n",), title="t"))
    rows = console.export_text().splitlines()
    assert any("[bold]Ann[/bold]" in row and row.rstrip().endswith("3 │") for row in rows)
    assert any("Bob\\x1b[31m" in row for row in rows)  # a control character escaped, not sent to the terminal


def test_the_bench_table_shows_a_note_with_brackets_as_written(capsys):
    from tools import bench
    from tools.perf.figures import Figure

    bench.table([Figure("codec", "build [x]", 1.5, "us", note="p99 [0.3 ms]")])
    out = capsys.readouterr().out
    assert "build [x]" in out and "p99 [0.3 ms]" in out
