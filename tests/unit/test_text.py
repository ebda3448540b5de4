"""node/text.py: text from the network shown as data, never as markup or control
sequences; and the places that draw it with rich (the nodes' tables, the demo's printer, the
lossy proxy's statistics).
End to end, with real processes: test_e2e_text.py and test_sniff.py."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from tools.demo import Printer
from node.render import Table
from node.terminal import rich_table
from node.text import escaped, json_line, rich_text

# Text that rich would read as markup or emoji codes (all but '[bold red]x' are names a server accepts).
MARKUP_NAMES = ["[/]", "[b][/b]Ann", "[link=http://x]Bob[/link]", "[bold red]x", ":cat:", "\\[b]x"]

# Control sequences and what each must be shown as.
SEQUENCES = [
    ("\x1b[2J", "\\x1b[2J"),  # CSI: erase the screen
    ("\x1b]8;;http://x\x1b\\Bob\x1b]8;;\x1b\\", "\\x1b]8;;http://x\\x1b\\Bob\\x1b]8;;\\x1b\\"),  # OSC 8 hyperlink
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: window title, ended by BEL
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("\x9d0;t\x9c", "\\x9d0;t\\x9c"),  # C1 OSC ... ST
    ("a\rb\nc\x08\x00\x7f", "a\\rb\\nc\\x08\\x00\\x7f"),  # C0 and DEL
    ("\u202eevil\u202c", "\\u202eevil\\u202c"),  # bidi override
    ("\u2066x\u2069\u200b\ufeff", "\\u2066x\\u2069\\u200b\\ufeff"),  # bidi isolates, zero width, BOM
    ("a\u2028b", "a\\u2028b"),  # line separator
    ("\U000e0041\udc80", "\\U000e0041\\udc80"),  # a tag character, a lone surrogate
]

COLUMNS = ("name", "ip", "port", "status")
HOST = "127.0.0.1"


@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_markup_looking_text_comes_out_literally(name):
    assert escaped(name) == name
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="truecolor", width=200).print(rich_text(name))
    assert out.getvalue() == name + "\n"


@pytest.mark.parametrize("raw, shown", SEQUENCES)
def test_control_sequences_are_escaped_visibly(raw, shown):
    assert escaped(raw) == shown
    assert rich_text(raw, style="bold").plain == shown
    out = io.StringIO()
    Console(file=out, force_terminal=False, width=200).print(rich_text(raw))
    assert out.getvalue() == shown + "\n"


def test_printable_text_is_left_as_it_is():
    for text in ("Ann", "héllo wörld", "日本語", "👩💻", "tab-less; 'quotes' \"and\" \\backslash", ""):
        assert escaped(text) == text


def test_json_lines_are_safe_on_a_terminal_and_keep_every_value():
    value = {"name": "[/]", "text": "".join(raw for raw, _ in SEQUENCES), "n": 3, "list": ["é", "\u202e"]}
    line = json_line(value)
    assert line.isprintable(), line
    assert json.loads(line) == value
    assert "\\u001b]8;;http://x" in line and "\\u202e" in line and "\\udb40\\udc41" in line  # U+E0041 as a pair
    assert json_line({"a": "é"}) == '{"a": "é"}'  # readable where nothing needs escaping


@pytest.mark.parametrize("color", [True, False])
@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_rich_tables_draw_names_literally(name, color):
    rows = [("Zed", HOST, "1", "online"), (name, HOST, "2", "offline"), ("Amy", HOST, "3", "online")]
    drawn = rich_table(Table("t", COLUMNS, rows), color)
    assert "\x1b]8;" not in drawn  # no OSC 8 hyperlink
    lines = [line for line in drawn.split("\n") if HOST in line]
    assert len(lines) == 3, drawn  # one line per row: nothing read as markup ate or added one
    expected = ["Zed 127.0.0.1 1 online", f"{name} 127.0.0.1 2 offline", "Amy 127.0.0.1 3 online"]
    assert [_uncoloured(line) for line in lines] == expected, drawn


def test_a_rich_table_escapes_control_sequences_in_cells():
    rows = [(raw, HOST, "1", "online") for raw, _ in SEQUENCES]
    drawn = rich_table(Table("t", COLUMNS, rows), True)
    without_styles = _uncoloured(drawn)
    for _, shown in SEQUENCES:
        assert shown in without_styles
    assert all(ch.isprintable() or ch == "\n" for ch in without_styles), without_styles


@pytest.mark.parametrize("color", [False, True])
def test_the_demo_printer_escapes_what_the_processes_print(color):
    stream = io.StringIO()
    printer = Printer(color=color, stream=stream)
    for raw, shown in SEQUENCES:
        printer.line("Ann", "|", f">>> Bob: {raw} [b]x[/b]")
        assert stream.getvalue() == f"Ann    | >>> Bob: {shown} [b]x[/b]\n"
        stream.seek(0)
        stream.truncate()


@pytest.mark.parametrize("color", [False, True])
def test_printer_prefixes_each_line_and_prints_chat_text_literally(color):
    stream = io.StringIO()
    printer = Printer(color=color, stream=stream)
    printer.line("Ann", "|", ">>> [bold]not markup[/bold]")
    printer.say("step")
    # A StringIO is no terminal, so rich adds no colour codes here; markup would still be eaten.
    assert stream.getvalue() == "Ann    | >>> [bold]not markup[/bold]\ndemo   : step\n"


def test_stats_show_a_rule_naming_a_markup_like_client_literally(capsys):
    """Rules name clients, and names come from the network: `[/]` is a valid name, not rich markup."""
    from tools.lossy_proxy import LossyProxy, _print_stats

    proxy = LossyProxy(server=("127.0.0.1", 9), rules=["drop from=[/]", "delay 10ms to=[link=http://x]Bob[/link]"])
    _print_stats(proxy)
    err = capsys.readouterr().err
    assert "drop from=[/]" in err and "to=[link=http://x]Bob[/link]" in err, err
    assert "\x1b]8;" not in err


def _uncoloured(text: str) -> str:
    """``text`` without rich's SGR colour codes (the only escapes a table may hold), spaces squeezed per line."""
    bare = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "\n".join(" ".join(line.split()) for line in bare.split("\n"))
