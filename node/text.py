"""Text from the network, made safe to show: the one place that does it, for the
nodes' terminal and for the tools.

Names, group names, messages and list items come from whoever can send a datagram.
Written to a terminal as they are, control characters move the cursor, retitle the
window, write OSC 8 hyperlinks or reorder a line (bidi overrides); handed to rich as
a string, ``[`` starts markup (``[/]`` raises MarkupError, ``[link=...]`` makes a
hyperlink, ``[b][/b]Ann`` reads as ``Ann``) and ``:name:`` an emoji.  So every such
text is shown through this module:

- ``escaped``: each character that Python does not call printable is written as its
  Python escape (``\\x1b``, ``\\x9b``, ``\\u202e``), visible and inert.  That covers
  C0 and C1 controls (so every ESC, CSI and OSC sequence), DEL, format characters
  (bidi overrides, zero-width ones), line and paragraph separators and every
  whitespace but the space, surrogates, private-use and unassigned characters.
- ``rich_text``: the same as a rich ``Text``, which rich never reads as markup.
- ``json_line``: JSON whose strings keep their exact values, those characters
  written as ``\\uXXXX`` escapes.
"""

from __future__ import annotations

import json


def inert(text: str) -> bool:
    """True when ``text`` shows as it is: nothing in it needs escaping."""
    return text.isprintable()  # C speed: the usual case costs one scan


def escaped(text: str) -> str:
    """``text`` with every character that is not printable written as its escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def rich_text(text: str, style: str = ""):
    """``text`` escaped, as a rich ``Text``: never parsed as markup or emoji codes."""
    from rich.text import Text  # imported late: start-up time matters for --help

    return Text(escaped(text), style=style)


def json_line(value) -> str:
    """``value`` as one line of JSON that is safe on a terminal and decodes to the same value."""
    line = json.dumps(value, ensure_ascii=False)
    if line.isprintable():
        return line
    # JSON's own escapes are ASCII: a character that is not printable is always inside a string.
    return "".join(ch if ch.isprintable() else _json_escape(ord(ch)) for ch in line)


def _json_escape(code: int) -> str:
    if code > 0xFFFF:  # JSON spells a character beyond the BMP as a UTF-16 surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"
    return f"\\u{code:04x}"
