"""The loopback address the tools start their processes on, and a free UDP port on it."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A UDP port the OS just handed out on ``host``: free right now, but closed again, so another
    process may take it before the caller binds it (rarely; callers that start a process on it retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
