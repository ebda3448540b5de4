"""A scripted server for end-to-end tests of one real client: the test plays the server,
datagram by datagram, built with the project's own endpoint."""

from __future__ import annotations

import random
import socket

from node.names import SERVER_NAME
from node.reliable import Endpoint, Outgoing, RetryPolicy
from proto import MSG_TYPES, STATUS_CODES
from proto.fastpath import Fields, parse
from tests.procs import HOST, WAIT

OK = STATUS_CODES["ok"]


class ScriptedServer:
    """A UDP socket on 127.0.0.1 that plays the server for one real client."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(WAIT)
        self.port = self.sock.getsockname()[1]
        self.net = Endpoint(SERVER_NAME, self.port, RetryPolicy(), random.Random(3))

    def receive(self, type_name: str) -> tuple[Fields, tuple[str, int]]:
        """The next datagram of that type (acks of table updates and the like are skipped)."""
        while True:
            data, addr = self.sock.recvfrom(65536)
            msg = parse(data)
            if MSG_TYPES[msg.type] == type_name:
                return msg, addr

    def send(self, addr, type_name: str, **payload) -> Outgoing:
        """Send a datagram carrying the client's token (once ``register`` has given it one): the
        token of the server's requests, and the one its answers to the client's requests echo."""
        out = self.net.build(type_name, **payload)
        self.sock.sendto(out.data, addr)
        return out

    def register(self, name: str, token: int = 77, session: int = 5) -> tuple[str, int]:
        """Welcome the client's registration and send it a table of itself; its address."""
        reg, addr = self.receive("reg")
        answer = self.net.build_answer(reg, status=OK, token=token, session=session)  # echoes the nonce
        self.sock.sendto(answer.data, addr)
        confirm, _ = self.receive("confirm")
        assert confirm.token == token, "the confirm carries the new token"
        self.net.token = token
        self.send(addr, "ack", ack_id=confirm.msg_id, status=OK)
        self.send(addr, "table", version=1, base=0,
                  entries=[{"client": name, "ip": HOST, "port": addr[1], "online": 1, "session": session}])
        return addr

    def close(self) -> None:
        self.sock.close()
