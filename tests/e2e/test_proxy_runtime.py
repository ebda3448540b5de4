"""The lossy proxy changed while it runs, with real processes: a real server, real clients, and the
proxy as a process between them, driven through its control API (`chatapp-proxy ctl`, the importable
ControlClient, raw HTTP), restarted with --map, and reloaded with SIGHUP.

That a session goes on is checked three ways: the client was welcomed once and never registers again,
a ``pass type=reg`` rule put in place after registration selects no datagram, and messages still
arrive both ways."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess

import pytest

from tests.procs import HOST, PROXY, PYTHON, ROOT, WAIT, Piped, quiet_port, start_clients
from tools.ctl import ControlClient

QUICK = ("--ack-timeout", "0.2")  # five tries in about a second
NO_ACK = (">>> No ACK from B, message not delivered", ">>> Report this issue to server")


class RunningProxy:
    """tools/lossy_proxy.py as a process with --control on a port of its choosing."""

    def __init__(self, server_port: int, *args: str):
        self.proc = Piped([PROXY, "--listen", f"{HOST}:0", "--server", f"{HOST}:{server_port}",
                           "--control", f"{HOST}:0", *args], "proxy")
        self.pid = self.proc.pid
        banner = self.proc.out[self.proc.wait_for(r"^lossy proxy on ")]
        self.port = int(banner.split()[3].rsplit(":", 1)[1])
        self.url = self.proc.err[self.proc.wait_for(r"^control on http://", "err")].split()[-1]
        self.client = ControlClient(self.url)

    def ctl(self, *words: str) -> subprocess.CompletedProcess:
        """``chatapp-proxy ctl URL WORDS...`` as a user types it."""
        return subprocess.run([PYTHON, PROXY, "ctl", self.url, *words], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, NO_COLOR="1", COLUMNS="200"))

    def counters(self) -> dict[str, dict[str, int]]:
        return {rule["name"]: rule["counters"] for rule in self.client.rules()}

    def kill(self) -> None:
        """SIGKILL: the proxy ends with no chance to write or close anything."""
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait()

    def alive(self) -> bool:
        return self.proc.popen.poll() is None


@pytest.fixture
def proxies():
    """``proxies(server_port, *args)`` starts a RunningProxy; each is stopped by pid at the end.
    Ask for it before ``cluster``, so that the clients deregister through a proxy still running."""
    started: list[RunningProxy] = []

    def start(server_port: int, *args: str) -> RunningProxy:
        started.append(RunningProxy(server_port, *args))
        return started[-1]

    yield start
    for proxy in started:
        proxy.proc.stop()


def mapped_ports(watcher, path, names: list[str]) -> dict[str, int]:
    """The mirror ports that the proxy's --map file gives the named clients, once it lists them all:
    the proxy writes the file MAP_DELAY after a mirror opens, which may be after the client's
    registration went through it."""

    def ports():
        try:
            found = {m["name"]: m["port"] for m in json.loads(path.read_text())["mirrors"]}
        except FileNotFoundError:
            return None
        return found if set(names) <= set(found) else None

    return watcher.wait_until(ports, f"{path.name} listing {', '.join(names)}", output=False)


def welcomed_once(*clients) -> bool:
    return all(c.text.count(">>> Welcome, You are registered.") == 1 and "registering again" not in c.text
               for c in clients)


def test_a_drop_added_then_removed_through_ctl_fails_then_delivers_in_the_same_session(proxies, cluster):
    server = cluster.server()
    proxy = proxies(server.port)
    a, b = start_clients(cluster, ["A", "B"], proxy.port, *QUICK)
    assert proxy.ctl("add", "pass", "type=reg", "--name", "regs").returncode == 0
    added = proxy.ctl("add", "drop", "type=pri_msg", "from=A", "--name", "lost")
    assert added.returncode == 0 and "lost: drop type=pri_msg from=A (rule 2" in added.stdout, added
    a.sendline("send B are you there?")
    a.expect_lines(*NO_ACK, timeout=15)
    assert proxy.counters()["lost"] == {"selected": 5, "applied": 5}  # the five tries, read back
    shown = proxy.ctl("stats")
    assert shown.returncode == 0 and "drop type=pri_msg from=A" in shown.stdout and "totals: " in shown.stdout
    assert proxy.ctl("remove", "lost").returncode == 0
    a.sendline("send B now?")
    a.expect_line(">>> Message received by B.")
    b.expect_line(">>> A: now?")
    assert "A: are you there?" not in b.text
    assert proxy.counters() == {"regs": {"selected": 0, "applied": 0}} and welcomed_once(a, b)
    assert proxy.ctl("reset").returncode == 0 and proxy.client.rules() == []


def test_bad_requests_get_4xx_and_the_proxy_keeps_forwarding(proxies, cluster):
    server = cluster.server()
    proxy = proxies(server.port)
    a, b = start_clients(cluster, ["A", "B"], proxy.port, *QUICK)
    proxy.client.add("pass type=pri_msg", "kept")
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    asked = [
        ("POST", "/proxies/chat/toxics", b"{not json", 400),
        ("POST", "/proxies/chat/toxics", json.dumps({"rule": "drop tipe=ack"}).encode(), 400),
        ("GET", "/proxies/chat/toxics/nobody", None, 404),
        ("DELETE", "/proxies/chat/toxics/nobody", None, 404),
        ("PUT", "/proxies/chat/toxics/kept", b"{}", 405),
    ]
    try:
        for method, path, body, status in asked:
            conn.request(method, path, body=body)
            answer = conn.getresponse()
            payload = json.loads(answer.read())
            assert (answer.status, payload["status"]) == (status, status) and payload["error"], (method, path, payload)
    finally:
        conn.close()
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:  # a megabyte announced
        sock.sendall(b"POST /proxies/chat/toxics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1 << 20))
        answer = sock.makefile("rb").read()  # answered at once, and closed: the body is never read
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"status": 413' in answer
    refused = proxy.ctl("add", "frop", "type=ack")
    assert refused.returncode == 1 and "HTTP 400: unknown action 'frop'" in refused.stderr
    assert proxy.ctl("remove", "nobody").returncode == 1
    assert proxy.ctl("add", "pass", "type=reg", "--name", "first", "--at", "1").returncode == 0
    assert proxy.alive() and [r["name"] for r in proxy.client.rules()] == ["first", "kept"]
    listed = proxy.ctl("list")
    assert listed.returncode == 0 and re.search(r"kept\s+\S?\s*pass type=pri_msg", listed.stdout), listed.stdout
    a.sendline("send B still here")
    a.expect_line(">>> Message received by B.")
    b.expect_line(">>> A: still here")
    assert proxy.counters()["kept"]["selected"] >= 1  # it went through this proxy


def test_a_proxy_killed_and_restarted_with_its_map_keeps_every_session(proxies, cluster, tmp_path):
    server = cluster.server()
    mirrors = tmp_path / "mirrors.json"
    first = proxies(server.port, "--map", str(mirrors), "--listen", f"{HOST}:{quiet_port()}")
    a, b = start_clients(cluster, ["A", "B"], first.port, *QUICK)
    table = server.expect_clients({"A": "online", "B": "online"}, since=0)
    assert mapped_ports(server, mirrors, ["A", "B"]) == {"A": table["A"][1], "B": table["B"][1]}
    assert json.loads(mirrors.read_text())["listen"] == first.port
    first.kill()
    second = proxies(server.port, "--map", str(mirrors))  # --listen port 0: the map's port again
    assert second.port == first.port
    second.client.add("pass type=reg", "regs")
    # B has sent nothing to this proxy yet: only the map can tell it that B is B.
    second.client.add("drop type=pri_msg to=B first=1", "named")
    a.sendline("send B after the restart")
    a.expect_line(">>> Message received by B.")
    b.expect_line(">>> A: after the restart")
    assert second.counters()["named"]["applied"] == 1
    b.sendline("create_group g")  # and B's requests reach the server from the same address
    b.expect_line(">>> Group g created by Server.")
    assert second.counters()["regs"]["selected"] == 0 and welcomed_once(a, b)
    assert server.expect_clients({"A": "online", "B": "online"}, since=0) == table


def test_a_mapped_port_taken_at_restart_is_said_and_the_other_sessions_go_on(proxies, cluster, tmp_path):
    server = cluster.server()
    mirrors = tmp_path / "mirrors.json"
    first = proxies(server.port, "--map", str(mirrors), "--listen", f"{HOST}:{quiet_port()}")
    a, b = start_clients(cluster, ["A", "B"], first.port, *QUICK)
    ports = mapped_ports(server, mirrors, ["A", "B"])
    first.kill()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((HOST, ports["B"]))
        second = proxies(server.port, "--map", str(mirrors))
        second.proc.wait_for(rf"mapped port {ports['B']} of B \(127\.0\.0\.1:{b.port}\) cannot be opened again", "err")
        a.sendline("create_group g")
        a.expect_line(">>> Group g created by Server.")
        assert second.alive() and welcomed_once(a)


def test_sighup_and_the_api_reload_the_rules_file_without_touching_sessions(proxies, cluster, tmp_path):
    server = cluster.server()
    rules = tmp_path / "faults.rules"
    rules.write_text("drop type=pri_msg from=A  # A cannot reach anyone\n")
    proxy = proxies(server.port, "--rules", str(rules))
    a, b = start_clients(cluster, ["A", "B"], proxy.port, *QUICK)
    a.sendline("send B one")
    a.expect_lines(*NO_ACK, timeout=15)

    rules.write_text("pass type=reg\n")
    os.kill(proxy.pid, signal.SIGHUP)
    proxy.proc.wait_for(r"reloaded .*faults\.rules: 1 rule$", "err")
    a.sendline("send B two")
    a.expect_line(">>> Message received by B.")
    b.expect_line(">>> A: two")

    rules.write_text("frop\n")  # a bad file: said, and the rules stay as they were
    os.kill(proxy.pid, signal.SIGHUP)
    proxy.proc.wait_for(r"rules not reloaded \(the old ones stay\): unknown action 'frop'", "err")
    refused = proxy.ctl("reload")
    assert refused.returncode == 1 and "HTTP 400" in refused.stderr
    assert [r["rule"] for r in proxy.client.rules()] == ["pass type=reg"]

    rules.write_text("drop type=pri_msg from=A\n")
    reloaded = proxy.ctl("reload")
    assert reloaded.returncode == 0 and "drop type=pri_msg from=A" in reloaded.stdout
    a.sendline("send B three")
    a.expect_lines(*NO_ACK, timeout=15)
    assert "A: one" not in b.text and "A: three" not in b.text and welcomed_once(a, b)
    assert proxy.alive()


def test_a_taken_control_port_or_a_broken_map_is_one_line_and_an_exit(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, PROXY, "--listen", f"{HOST}:0", "--server", f"{HOST}:9", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("--control", f"{HOST}:{port}")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"cannot serve the control API on {HOST}:{port}" in done.stderr
    broken = tmp_path / "map.json"
    broken.write_text('{"listen": 7000, "mirrors": [')
    done = run("--map", str(broken))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and f"the map {broken} is not JSON" in done.stderr
