"""The rows of a client's table (node/peers.py): clients that are given one ``PeerRows``
share equal rows; clients that are not share nothing (no process-wide store)."""

from __future__ import annotations

from node.peers import PeerRows
from tests.simnet import SERVER, SimNet


def test_equal_rows_are_one_object_until_the_store_is_full():
    rows = PeerRows(limit=2)
    first = rows.get("10.0.0.1", 7001, 1, 5)
    assert rows.get("10.0.0.1", 7001, 1, 5) is first
    assert first.addr == ("10.0.0.1", 7001) and first.online is True and first.session == 5
    assert rows.get("10.0.0.1", 7001, 0, 5) is not first, "another value: another row"
    assert len(rows) == 2
    rows.get("10.0.0.2", 7002, 1, 6)  # full: cleared, then this one kept
    assert len(rows) == 1 and rows.get("10.0.0.1", 7001, 1, 5) is not first


def test_clients_share_rows_only_when_given_the_same_store():
    sim = SimNet()
    ann, bob = sim.online("Ann", "Bob")
    assert ann.table == bob.table
    assert ann.table["Ann"] is not bob.table["Ann"], "each client its own rows unless told otherwise"
    shared = PeerRows()
    cat, dan = sim.client("Cat", peers=shared), sim.client("Dan", peers=shared)
    sim.run(1)
    assert cat.table == dan.table and cat.table["Cat"] is dan.table["Cat"]
    assert len(shared) == 4 and SERVER not in [row.addr for row in cat.table.values()]
