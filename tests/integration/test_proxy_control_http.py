"""The control API over HTTP (tools/control_http.py, h11) on real sockets of 127.0.0.1, served on the
loop of a LossyProxy in a thread: limits on size, time and connections, and the proxy forwarding
chat datagrams all the while.  The idle limit is shortened here so that the test is quick."""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import time

import pytest

from proto import ChatHeader
from tests.procs import HOST, WAIT, ProxyThread
from tools import control_http
from tools.control import ControlAPI
from tools.ctl import ControlClient

pytestmark = pytest.mark.e2e  # real sockets


class Served:
    """A proxy in a thread, its control API on a port of its loop, and a stand-in server and client."""

    def __init__(self, proxy: ProxyThread):
        self.thread = proxy
        api = ControlAPI(proxy.proxy)
        self.http = asyncio.run_coroutine_threadsafe(control_http.serve(api.handle, HOST, 0), proxy._loop).result()
        self.port = self.http.sockets[0].getsockname()[1]
        self.client = ControlClient(f"{HOST}:{self.port}")

    def connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=WAIT)
        return sock

    def close(self) -> None:
        async def close():
            self.http.close()

        asyncio.run_coroutine_threadsafe(close(), self.thread._loop).result()


@pytest.fixture
def served(monkeypatch):
    monkeypatch.setattr(control_http, "IDLE", 0.5)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((HOST, 0))
    with ProxyThread(server=server.getsockname()) as proxy:
        result = Served(proxy)
        result.server = server
        yield result
        result.close()
    server.close()


def forwards(served: Served) -> bool:
    """A chat datagram from a stand-in client reaches the stand-in server through the proxy."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((HOST, 0))
        data = bytes(ChatHeader(type="reg", msg_id=1, port=client.getsockname()[1], sender="Ann"))
        client.sendto(data, served.thread.address)
        ready, _, _ = select.select([served.server], [], [], WAIT)
        return bool(ready) and served.server.recv(65535) == data


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it: closed with
    what we sent unread)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def status_and_error(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]


def test_a_body_over_the_limit_gets_413_before_it_is_read(served):
    with served.connect() as sock:
        sock.sendall(f"POST /proxies/chat/toxics HTTP/1.1\r\nHost: x\r\nContent-Length: {10**9}\r\n\r\n".encode())
        status, error = status_and_error(answer(sock))
    assert status == 413 and "over" in error
    with served.connect() as sock:  # chunked: no length said, counted as it comes
        sock.sendall(b"POST /proxies/chat/toxics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(control_http.MAX_BODY // 0x4000):
            sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
        sock.sendall(b"1\r\nx\r\n")  # one byte over (and no more: what the server never reads would reset)
        status, error = status_and_error(answer(sock))
    assert status == 413
    assert served.client.rules() == [] and forwards(served)


def test_a_head_over_the_limit_gets_431_and_garbage_gets_400(served):
    with served.connect() as sock:
        sock.sendall(b"GET /proxies HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 * control_http.MAX_HEAD) + b"\r\n\r\n")
        assert status_and_error(answer(sock))[0] == 431
    with served.connect() as sock:
        sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
        status, error = status_and_error(answer(sock))
        assert status == 400 and "bad HTTP" in error
    assert forwards(served)


def test_a_slow_request_is_closed_when_idle_and_the_proxy_goes_on_meanwhile(served):
    with served.connect() as slow:
        slow.sendall(b"GET /prox")  # and nothing more
        assert served.client.add("drop type=ack")["name"]  # the API answers others meanwhile
        assert forwards(served)
        assert answer(slow) == b""  # closed without a word once idle (a socket timeout fails the test)


def test_connections_past_the_limit_are_closed_and_the_api_answers_once_they_go(served, monkeypatch):
    monkeypatch.setattr(control_http, "IDLE", WAIT)  # the held ones stay open for the whole test
    held = [served.connect() for _ in range(control_http.MAX_CONNECTIONS)]
    try:
        for sock in held:
            sock.sendall(b"G")
        with served.connect() as extra:
            extra.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer(extra) == b""  # closed unanswered
        assert forwards(served)
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + WAIT
    while True:  # the server sees them go as its loop runs
        try:
            assert served.client.rules() == []
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_one_connection_carries_several_requests(served):
    conn = http.client.HTTPConnection(HOST, served.port, timeout=WAIT)
    try:
        conn.request("POST", "/proxies/chat/toxics", body=json.dumps({"rule": "drop type=ack", "name": "a"}))
        first = conn.getresponse()
        assert first.status == 200 and json.loads(first.read())["name"] == "a"
        conn.request("POST", "/proxies/chat/toxics", body=b"{oops")
        second = conn.getresponse()
        assert second.status == 400 and "not JSON" in json.loads(second.read())["error"]
        conn.request("GET", "/proxies/chat/toxics/a")
        third = conn.getresponse()
        assert third.status == 200 and json.loads(third.read())["rule"] == "drop type=ack"
    finally:
        conn.close()


def test_a_handler_that_fails_gives_500_and_the_server_goes_on():
    calls = []

    def handle(method, target, body):
        calls.append(target)
        if target == "/boom":
            raise KeyError("a bug")
        return 200, {"ok": True}, []

    async def scenario():
        served = await control_http.serve(handle, HOST, 0)
        port = served.sockets[0].getsockname()[1]
        answers = []
        for target in ("/boom", "/fine"):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answers.append(await asyncio.wait_for(reader.read(), WAIT))
            writer.close()
        served.close()
        return answers

    boom, fine = asyncio.run(scenario())
    assert status_and_error(boom) == (500, "internal error: KeyError")
    assert fine.startswith(b"HTTP/1.1 200 ") and calls == ["/boom", "/fine"]


def test_a_client_that_expects_100_continue_is_told_to_go_on(served):
    body = json.dumps({"rule": "drop type=ack", "name": "long", "note": "x" * 2000}).encode()  # over 1 KiB
    with served.connect() as sock:
        sock.sendall(b"POST /proxies/chat/toxics HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")  # before the body is sent
        sock.sendall(body)
        assert answer(sock).startswith(b"HTTP/1.1 200 ")
    assert [r["name"] for r in served.client.rules()] == ["long"]
