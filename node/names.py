"""Rules for user names, group names and message text, shared by every node."""

from __future__ import annotations

from proto import MAX_NAME_BYTES, MAX_TEXT_BYTES, SERVER_NAME

from .text import inert


def _plain_name(name: str) -> bool:
    # inert(): a name shows as it is on every terminal; it refuses every whitespace but the space.
    size = len(name.encode("utf-8"))
    return 0 < size <= MAX_NAME_BYTES and ";" not in name and " " not in name and inert(name)


def valid_username(name: str) -> bool:
    return _plain_name(name) and name != SERVER_NAME


def valid_group_name(name: str) -> bool:
    return _plain_name(name)


def text_too_long(text: str) -> bool:
    return len(text.encode("utf-8")) > MAX_TEXT_BYTES


def sendable(line: str) -> str:
    """Typed bytes that are not UTF-8 reach us as lone surrogates (surrogateescape), which
    cannot be encoded into a message: make them U+FFFD instead of failing later."""
    try:
        return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return line.encode("utf-8", "replace").decode("utf-8")
