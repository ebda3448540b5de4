"""Answers must fit their requests: ``reg`` is answered only by ``reg_ack``, every other
request only by ``ack``.  An answer of the other type is dropped and counted (``wrong
answer``), never handed to the request's handler, which reads fields it does not have."""

from __future__ import annotations

import random

from node.client import ClientLogic
from node.effects import Exit, Send
from node.render import HELP, render
from node.limits import drop_report
from node.reliable import RetryPolicy
from proto import MSG_TYPES
from proto.fastpath import encode, parse
from tests.scripted import OK, ScriptedServer

SERVER = ("10.9.0.1", 9000)
REGISTERING = ">>> Registering as Ann with 10.9.0.1:9000 ..."


class Client:
    """A ClientLogic fed by hand; ``sent`` and ``shown`` collect its effects."""

    def __init__(self):
        self.logic = ClientLogic("Ann", SERVER, 7001, RetryPolicy(), random.Random(1))
        self.sent: list = []
        self.shown: list[str] = []
        self.logic.start(0.0)
        self.collect(0.0)

    def collect(self, now: float) -> None:
        for effect in self.logic.drain(now):
            if isinstance(effect, Send):
                self.sent.append(parse(effect.data))
            elif not isinstance(effect, Exit) and isinstance(lines := render(effect), list):
                self.shown += lines

    def last_sent(self, type_name: str):
        return next(pkt for pkt in reversed(self.sent) if MSG_TYPES[pkt.type] == type_name)

    def answer(self, request, type_name: str, now: float, **payload) -> None:
        header = {"msg_id": 500 + len(self.sent), "token": request.token, "sender": "server"}  # echoed, as answers do
        self.logic.receive(encode(type_name, header,
                                  {"ack_id": request.msg_id, "status": OK, **payload}), SERVER, now)
        self.collect(now)

    def type(self, line: str, now: float) -> None:
        self.logic.command(line, now)
        self.collect(now)


def test_an_ack_answering_reg_is_dropped_and_the_reg_ack_still_registers():
    ann = Client()
    reg = ann.last_sent("reg")
    ann.answer(reg, "ack", 0.1)
    assert not ann.logic.registered and ann.shown == [REGISTERING]
    assert ann.logic.drops["wrong answer"] == 1
    ann.answer(reg, "reg_ack", 0.2, token=9, session=3)
    assert ann.last_sent("confirm").token == 9
    ann.answer(ann.last_sent("confirm"), "ack", 0.25)
    assert ann.logic.registered and ann.shown == [REGISTERING, ">>> Welcome, You are registered."]
    assert ann.logic.net.token == 9


def test_a_reg_ack_answering_a_command_is_dropped_and_the_commands_go_on():
    ann = Client()
    ann.answer(ann.last_sent("reg"), "reg_ack", 0.1, token=9, session=3)
    ann.answer(ann.last_sent("confirm"), "ack", 0.15)
    ann.type("list_groups", 0.2)
    request = ann.last_sent("list_groups")
    ann.answer(request, "reg_ack", 0.3, token=1, session=1)
    ann.type("help", 0.4)  # waits for list_groups, as typed commands do
    assert ann.logic.drops["wrong answer"] == 1
    assert ann.shown == [REGISTERING, ">>> Welcome, You are registered."]
    ann.answer(request, "ack", 0.5, items=[])
    assert ann.shown[2:] == [">>> No available group right now", *(f">>> {line}" for line in HELP)]
    assert ("wrong answer", 1) in drop_report(ann.logic.drops).counts


def test_a_real_client_drops_a_reg_ack_answering_a_command_and_goes_on(cluster):
    fake = ScriptedServer()
    try:
        ann = cluster.client("Ann", fake.port, register=False)  # 2.5 s of tries
        addr = fake.register("Ann")
        ann.expect_line(">>> Welcome, You are registered.")
        ann.sendline("list_groups")
        request, _ = fake.receive("list_groups")
        fake.send(addr, "reg_ack", ack_id=request.msg_id, status=OK, token=1, session=1)
        ann.sendline("help")
        fake.receive("list_groups")  # a retransmission: the reg_ack answered nothing
        fake.send(addr, "ack", ack_id=request.msg_id, status=OK)
        ann.expect_lines(">>> No available group right now", *(f">>> {line}" for line in HELP))
        ann.sendline("dereg Ann")
        dereg, _ = fake.receive("dereg")
        fake.send(addr, "ack", ack_id=dereg.msg_id, status=OK)
        ann.expect_line(">>> You are Offline. Bye.")
        ann.expect_line(">>> Dropped datagrams: wrong answer 1")
        assert ann.wait_exit() == 0
        assert "Traceback" not in ann.text and "Exception" not in ann.text
    finally:
        fake.close()
