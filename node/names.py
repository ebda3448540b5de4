"""Rules for user names, group names and message text, shared by every node."""

from __future__ import annotations

from proto import MAX_NAME_BYTES, MAX_TEXT_BYTES

SERVER_NAME = "server"


def _plain_name(name: str) -> bool:
    return bool(name) and len(name.encode("utf-8")) <= MAX_NAME_BYTES and ";" not in name and not any(
        ch.isspace() or not ch.isprintable() for ch in name
    )


def valid_username(name: str) -> bool:
    return _plain_name(name) and name != SERVER_NAME


def valid_group_name(name: str) -> bool:
    return _plain_name(name)


def text_too_long(text: str) -> bool:
    return len(text.encode("utf-8")) > MAX_TEXT_BYTES
