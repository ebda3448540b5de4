"""Registration: welcome and table, names and addresses already taken, coming back."""

from __future__ import annotations

import signal

from tests.procs import HOST, cluster  # noqa: F401  (cluster is a fixture)

NAME_TAKEN = ">>> Someone has already used this name. Try another one."
ADDR_TAKEN = ">>> Someone has already used this (IP, port) combination. Try another one."


def test_welcome_then_table(cluster):
    server = cluster.server()
    ann = cluster.client("Ann", server, register=False)
    ann.expect_line(">>> Welcome, You are registered.")
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
