"""Registration: welcome and table, names and addresses already taken, coming back."""

from __future__ import annotations

import json
import signal

from tests.procs import HOST, ProxyProcess

NAME_TAKEN = ">>> Someone has already used this name. Try another one."
ADDR_TAKEN = ">>> Someone has already used this (IP, port) combination. Try another one."


def test_welcome_then_table(cluster):
    server = cluster.server()
    ann = cluster.client("Ann", server, register=False)
    ann.expect_lines(f">>> Registering as Ann with {HOST}:{server.port} ...", ">>> Welcome, You are registered.")
    assert ann.text.startswith(">>> Registering as Ann"), "the first line, shown while it waits"
    table = ann.expect_clients({"Ann": "online"})
    assert table == {"Ann": (HOST, ann.port, "online")}
    server_table = server.expect_clients({"Ann": "online"})
    assert server_table == {"Ann": (HOST, ann.port, "online")}


def test_every_client_sees_newcomers(cluster):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    bob = cluster.client("Bob", server)
    assert ann.expect_clients({"Bob": "online"}) == {
        "Ann": (HOST, ann.port, "online"),
        "Bob": (HOST, bob.port, "online"),
    }
    cy = cluster.client("Cy", server, register=False)
    cy.expect_line(">>> Welcome, You are registered.")
    assert cy.expect_clients({"Cy": "online"}) == {
        "Ann": (HOST, ann.port, "online"),
        "Bob": (HOST, bob.port, "online"),
        "Cy": (HOST, cy.port, "online"),
    }


def test_name_taken_by_online_client(cluster):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    impostor = cluster.client("Ann", server, register=False)
    impostor.expect_line(NAME_TAKEN)
    assert impostor.wait_exit() == 1
    assert "Welcome" not in impostor.text and "Traceback" not in impostor.text
    # The first Ann is untouched: still online and still served.
    ann.sendline("list_groups")
    ann.expect_line(">>> No available group right now")


def test_address_taken_by_online_client(cluster):
    """A client that crashed leaves its row online; another name on its (IP, port) is refused."""
    server = cluster.server()
    ann = cluster.client("Ann", server)
    ann.signal(signal.SIGKILL)
    ann.wait_exit()
    bob = cluster.client("Bob", server, port=ann.port, register=False)
    bob.expect_line(ADDR_TAKEN)
    assert bob.wait_exit() == 1
    assert "Welcome" not in bob.text and "Traceback" not in bob.text


def test_offline_name_registers_again(cluster):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    ann.sendline("dereg Ann")
    ann.expect_line(">>> You are Offline. Bye.")
    assert ann.wait_exit() == 0
    server.expect_clients({"Ann": "offline"})
    again = cluster.client("Ann", server)  # another port: a new session of the same name
    assert server.expect_clients({"Ann": "online"})["Ann"] == (HOST, again.port, "online")


def test_crashed_client_comes_back_on_same_address(cluster):
    """The row is still online, but it is the same (IP, port): the owner is back."""
    server = cluster.server()
    ann = cluster.client("Ann", server)
    ann.signal(signal.SIGKILL)
    ann.wait_exit()
    back = cluster.client("Ann", server, port=ann.port)
    back.sendline("list_groups")
    back.expect_line(">>> No available group right now")


def test_lost_reg_acks_and_confirms_are_retransmitted_and_register_once(cluster, tmp_path):
    """Through tools/lossy_proxy.py: the first reg_ack and the first two confirms are lost.  The
    retransmitted reg gets the same answer again (the same token), the third confirm starts
    the session, and the others see the newcomer."""
    server = cluster.server()
    ann = cluster.client("Ann", server)
    log = tmp_path / "proxy.jsonl"
    proxy = ProxyProcess((HOST, server.port), "--log", str(log),
                         "--rule", "drop type=reg_ack first=1", "--rule", "drop type=confirm first=2")
    try:
        bob = cluster.client("Bob", proxy.address[1], register=False)
        bob.expect_line(">>> Welcome, You are registered.")
        bob.expect_clients({"Bob": "online", "Ann": "online"})
        ann.expect_clients({"Bob": "online"})
        bob.sendline("list_groups")  # the session works
        bob.expect_line(">>> No available group right now")
    finally:
        proxy.stop()
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    dropped = [(a["type"], a["id"]) for a in actions if a["action"] == "drop"]
    assert [kind for kind, _ in dropped] == ["reg_ack", "confirm", "confirm"], dropped
    confirms = {a["id"] for a in actions if a["type"] == "confirm"}
    assert len(confirms) == 1, "one confirm, retransmitted"
    answers = [a["id"] for a in actions if a["type"] == "reg_ack"]
    assert len(answers) == 2 and len(set(answers)) == 1, "the retransmitted reg is answered again from memory"
