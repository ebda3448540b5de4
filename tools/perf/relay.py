"""The proxy benchmark's baseline: a bare asyncio UDP relay with no rules and no decoding.

    python3 -m tools.perf.relay --port P --server HOST:PORT

It has the lossy proxy's topology without its logic: every client that writes to the listening
port gets a socket of its own towards the server, and what the server sends to that socket goes
back to the client from the listening port.  Written the plain asyncio way (protocols and
transports), as a user would write a relay.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

from tools.cli import host_port
from tools.perf.echo import until_stopped


class Front(asyncio.DatagramProtocol):
    """The listening port: datagrams from clients, each client through its own upstream socket."""

    def __init__(self, server) -> None:
        self.server = server
        self.upstream: dict = {}  # client -> its transport towards the server, or the datagrams waiting for it

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        up = self.upstream.get(addr)
        if up is None:
            self.upstream[addr] = [data]
            asyncio.get_running_loop().create_task(self._open(addr))
        elif isinstance(up, list):
            up.append(data)
        else:
            up.sendto(data, self.server)

    async def _open(self, client) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: Back(self.transport, client), local_addr=("127.0.0.1", 0))
        waiting, self.upstream[client] = self.upstream[client], transport
        for data in waiting:
            transport.sendto(data, self.server)


class Back(asyncio.DatagramProtocol):
    """One client's socket towards the server: what comes back goes to the client."""

    def __init__(self, front, client) -> None:
        self.front = front
        self.client = client

    def datagram_received(self, data: bytes, addr) -> None:
        self.front.sendto(data, self.client)


def listening(port: int) -> socket.socket:
    """The relay's port, with the system's default buffers, as the lossy proxy has."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m tools.perf.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", type=host_port, required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    asyncio.run(until_stopped(lambda: Front(args.server), listening(args.port)))


if __name__ == "__main__":
    main()
