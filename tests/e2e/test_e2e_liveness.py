"""Liveness with real processes: the server notices a gone client without anyone messaging it."""

from __future__ import annotations

import signal

from tests.procs import FAST, HOST, ProxyProcess, join_via, quiet_port, registered, start_clients

QUICK = ("--ack-timeout", "0.2")  # 5 tries: a claim's probe (4) fits the claimant's wait
IDLE = ("--idle-probe", "1")  # short, so the test waits little; the rule is the same at 30 s


def test_a_client_killed_with_sigkill_is_marked_offline_without_other_traffic(cluster):
    server = cluster.server(*FAST, *IDLE)
    ann, bob = cluster.clients(["Ann", "Bob"], server, *FAST)
    bob.signal(signal.SIGKILL)  # no dereg, no last word: it is simply gone
    bob.wait_exit()
    server.expect_line(">>> Client Bob did not answer the server's probe, marked offline")
    server.expect_clients({"Ann": "online", "Bob": "offline"})
    ann.expect_clients({"Ann": "online", "Bob": "offline"})  # told with the broadcast table
    assert ann.alive(), "the client that answers its probes stays"
    assert "Client Ann did not answer" not in server.text


def test_a_name_cut_off_by_a_proxy_restart_registers_again_through_the_new_proxy(cluster):
    """Restarting the proxy in front of the server cuts every client off (their server address
    is gone); the server still lists them online at the old proxy's ports.  A client started
    again under the same name is registered: the server probes the old address first."""
    server = cluster.server(*QUICK, "--idle-probe", "0")  # only the claim probes here
    proxy = ProxyProcess((HOST, server.port))
    try:
        ann, bob = start_clients(cluster, ["Ann", "Bob"], proxy.address[1], *QUICK)
        proxy.stop()
        proxy = ProxyProcess((HOST, server.port))  # a new proxy: new ports
        ann.sendline("list_groups")
        ann.expect_lines(">>> Server not responding", ">>> Exiting")
        assert ann.wait_exit() == 1
        server.expect_clients({"Ann": "online", "Bob": "online"}, since=0)  # nobody told the server
        again = join_via(cluster, "Ann", proxy.address[1], *QUICK)
        assert registered(again), "its port was taken meanwhile: run again"  # not refused: welcomed
        server.expect_line(">>> Client Ann did not answer the server's probe, marked offline")
        assert again.alive()
    finally:
        proxy.stop()


FORGOTTEN = ">>> The server no longer knows this client (it may have restarted): registering again"
WELCOME = ">>> Welcome, You are registered."


def test_clients_of_a_server_killed_and_restarted_on_its_port_register_again_and_go_on(cluster):
    server = cluster.server(*FAST, restartable=True)
    ann, bob = cluster.clients(["Ann", "Bob"], server, *FAST)
    server.signal(signal.SIGKILL)
    server.wait_exit()
    again = cluster.spawn(["-s", str(server.port), "--bind", HOST, *FAST], f"server again:{server.port}")
    again.expect_line(">>> Server is online")  # a new process: it knows nobody
    marks = {}
    for client in (ann, bob):
        marks[client.name] = client.mark()
        client.sendline("list_groups")
        client.expect_lines(FORGOTTEN, WELCOME)
        assert client.alive()
    ann.expect_clients({"Ann": "online", "Bob": "online"}, since=marks["Ann"])  # the new server's table
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.sendline("send Bob still here")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(">>> Ann: still here")
    again.expect_line(">>> Client Ann created group g successfully")


def test_clients_cut_off_by_a_proxy_restarted_on_its_port_register_again_and_go_on(cluster):
    """The case users met: restart the proxy in front of a server (same port).  The proxy gives
    every client a new address on the server's side, so the server answers them `not_registered`
    and lists their old addresses online; each client registers again, the server probes the old
    address before giving it the name back, and the chat goes on."""
    server = cluster.server(*QUICK, "--idle-probe", "0")  # only the claims probe here
    proxy = ProxyProcess((HOST, server.port), "--listen", f"{HOST}:{quiet_port()}")  # the last --listen wins
    try:
        port = proxy.address[1]
        ann, bob = start_clients(cluster, ["Ann", "Bob"], port, *QUICK)
        proxy.stop()
        proxy = ProxyProcess((HOST, server.port), "--listen", f"{HOST}:{port}")  # the last --listen wins
        assert proxy.address[1] == port
        for client in (ann, bob):
            client.sendline("list_groups")
            client.expect_lines(FORGOTTEN, WELCOME)
        server.expect_line(">>> Client Ann did not answer the server's probe, marked offline")
        ann.sendline("create_group g")
        ann.expect_line(">>> Group g created by Server.")
        assert ann.alive() and bob.alive()
        assert "Someone has already used this name" not in ann.text + bob.text
    finally:
        proxy.stop()
