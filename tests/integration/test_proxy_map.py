"""--map FILE of tools/lossy_proxy.py on real sockets, with a LossyProxy in a thread: what the map
holds, and what a burst of new endpoints costs it.  Restarts with real processes:
tests/e2e/test_proxy_runtime.py."""

from __future__ import annotations

import json
import select
import socket

import pytest

from proto import ChatHeader
from tests.procs import HOST, WAIT, ProxyThread
from tools import mirror_map

pytestmark = pytest.mark.e2e  # real sockets


def test_a_burst_of_new_endpoints_is_written_in_a_few_writes_and_all_of_it_kept(tmp_path, monkeypatch):
    writes = []
    save = mirror_map.save
    monkeypatch.setattr(mirror_map, "save", lambda *args: (writes.append(len(args[2])), save(*args)))
    path = tmp_path / "map.json"
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((HOST, 0))
    senders = []
    try:
        with ProxyThread(server=server.getsockname(), map_path=str(path)) as proxy:
            started = len(writes)
            for n in range(200):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind((HOST, 0))
                senders.append(sock)
                sock.sendto(bytes(ChatHeader(type="reg", msg_id=1, port=sock.getsockname()[1], sender=f"n{n}")),
                            proxy.address)
            for _ in senders:  # every one forwarded: each has its mirror and its name
                assert select.select([server], [], [], WAIT)[0]
                server.recv(65535)
        # One write per endpoint would be 400 (a mirror and a name each); the proxy's stop writes the rest.
        assert len(writes) - started < 100, writes
        mapped = json.loads(path.read_text())["mirrors"]
        assert sorted(m["name"] for m in mapped) == sorted(f"n{n}" for n in range(200))
    finally:
        for sock in [server, *senders]:
            sock.close()
