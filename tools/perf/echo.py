"""The baselines' server: a bare asyncio UDP server with no protocol logic.

    python3 -m tools.perf.echo --port P            echo every datagram to its sender
    python3 -m tools.perf.echo --port P --relay    fan out like the chat server does
    python3 -m tools.perf.echo --port P --relay --plain    the same without asyncio

Relay mode has the chat server's traffic pattern without its logic: ``J...`` joins
(answered ``J``), ``M...`` from a member is answered to its sender and copied to
every other member, ``A...`` (a member's ack of a copy) is only received.  ``--plain``
serves from a blocking ``recvfrom`` loop: the least Python can spend per datagram, so
about the most a Python server can get through this machine's loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys

RECEIVE_BUFFER = 4 << 20  # bytes, as node/runtime.py gives the chat server: the same room for bursts


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


def relay(data: bytes, addr, members: dict, sendto) -> None:
    kind = data[:1]
    if kind == b"M":
        sendto(b"A", addr)
        for member in members:
            if member != addr:
                sendto(data, member)
    elif kind == b"J":
        members[addr] = None
        sendto(b"J", addr)


class Relay(Echo):
    def __init__(self) -> None:
        self.members: dict[tuple, None] = {}

    def datagram_received(self, data: bytes, addr) -> None:
        relay(data, addr, self.members, self.transport.sendto)


def bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(("127.0.0.1", port))
    return sock


def serve_plain(port: int, fan_out: bool) -> None:
    """The same protocol as ``Echo``/``Relay``, from a blocking loop (stopped by SIGTERM)."""
    sock = bound(port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    recvfrom, sendto = sock.recvfrom, sock.sendto
    members: dict[tuple, None] = {}
    print("ready", flush=True)
    while True:
        data, addr = recvfrom(65536)
        if fan_out:
            relay(data, addr, members, sendto)
        else:
            sendto(data, addr)


async def serve(port: int, relay: bool) -> None:
    await until_stopped(Relay if relay else Echo, bound(port))


async def until_stopped(protocol_factory, sock: socket.socket) -> None:
    """Serve the protocol on ``sock``, say ``ready``, and stop on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(protocol_factory, sock=sock)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print("ready", flush=True)
    try:
        await stop
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m tools.perf.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--relay", action="store_true", help="fan out instead of echoing")
    parser.add_argument("--plain", action="store_true", help="a blocking loop instead of asyncio")
    args = parser.parse_args(argv)
    if args.plain:
        serve_plain(args.port, args.relay)
    else:
        asyncio.run(serve(args.port, args.relay))


if __name__ == "__main__":
    main()
