"""The baselines' server: a bare asyncio UDP server with no protocol logic.

    python3 -m tools.perf.echo --port P            echo every datagram to its sender
    python3 -m tools.perf.echo --port P --relay    fan out like the chat server does

Relay mode has the chat server's traffic pattern without its logic: ``J...`` joins
(answered ``J``), ``M...`` from a member is answered to its sender and copied to
every other member, ``A...`` (a member's ack of a copy) is only received.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

RECEIVE_BUFFER = 4 << 20  # bytes, as node/runtime.py gives the chat server: the same room for bursts


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


class Relay(Echo):
    def __init__(self) -> None:
        self.members: dict[tuple, None] = {}

    def datagram_received(self, data: bytes, addr) -> None:
        kind = data[:1]
        if kind == b"M":
            self.transport.sendto(b"A", addr)
            for member in self.members:
                if member != addr:
                    self.transport.sendto(data, member)
        elif kind == b"J":
            self.members[addr] = None
            self.transport.sendto(b"J", addr)


async def serve(port: int, relay: bool) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind(("127.0.0.1", port))
    transport, _ = await loop.create_datagram_endpoint(Relay if relay else Echo, sock=sock)
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
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.relay))


if __name__ == "__main__":
    main()
