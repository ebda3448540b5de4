"""--map FILE of tools/lossy_proxy.py on real sockets, with a LossyProxy in a thread: what the map
holds, and what a burst of new endpoints costs it.  Restarts with real processes:
tests/e2e/test_proxy_runtime.py."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys

import pytest

from proto import ChatHeader
from tests.procs import HOST, PROXY, ROOT, WAIT, ProxyThread
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


def test_a_kept_listening_port_taken_meanwhile_is_named_with_the_map_it_came_from(tmp_path):
    """--listen's port 0 with a map means the map's port: the error names the port it tried."""
    path = tmp_path / "map.json"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((HOST, 0))
        taken = holder.getsockname()[1]
        mirror_map.save(str(path), taken, [])
        done = subprocess.run([sys.executable, PROXY, "--listen", f"{HOST}:0", "--server", f"{HOST}:9", "--map", str(path)],
                              capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 1, done
    assert done.stderr == f"lossy_proxy.py: cannot listen on {HOST}:{taken} (the port kept in {path}): Address already in use\n"
