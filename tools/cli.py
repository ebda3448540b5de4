"""Command-line pieces the tools share: the command's name, one-line user errors, HOST:PORT arguments,
and captures."""

from __future__ import annotations

import argparse
import os
import socket
import sys


class UserError(Exception):
    """A mistake the user can fix: one line on stderr, no traceback."""


def host_port(text: str) -> tuple[str, int]:
    """argparse type for HOST:PORT (the host resolved to IPv4; empty host: 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT")
    try:
        return socket.gethostbyname(host or "127.0.0.1"), int(port)
    except (socket.gaierror, UnicodeError):
        raise argparse.ArgumentTypeError(f"cannot resolve '{host}'") from None


def open_capture(path: str):
    """A Scapy PcapReader (pcap or pcapng) for ``path``, or UserError."""
    from scapy.error import Scapy_Exception
    from scapy.layers import inet, l2  # noqa: F401  (registers the link types a capture can have)
    from scapy.utils import PcapReader

    try:
        return PcapReader(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except Scapy_Exception as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def prog() -> str:
    """The name the user typed for this command (``chatapp-sniff``, ``sniff.py``...), as argparse
    shows it in usage lines; error lines use it too."""
    return os.path.basename(sys.argv[0])
