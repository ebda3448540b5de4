"""tools/traffic.py, the traffic model the sniffer shows, and its views (tools/traffic_views.py),
in-process on made-up datagrams: names, retries, matched acks, round trips, unanswered requests,
the proxy's log.  The sniffer as a process, on real captures: tests/integration/test_sniff.py."""

from __future__ import annotations

from proto import STATUSES, VERSION, Ack, ChatHeader, Entry, GrpMsg, MsgId, PriMsg, RegAck, Table
from tests.procs import HOST
from tools import traffic, traffic_views as views
from tools.stats import percentile
from tools.traffic import Tracker

SERVER, ANN, BOB, MIRROR = (HOST, 6000), (HOST, 7001), (HOST, 7002), (HOST, 9001)


def header(kind: str, msg_id: int, sender: str, port: int) -> ChatHeader:
    return ChatHeader(type=kind, msg_id=msg_id, sender=sender, port=port)


def test_names_come_from_senders_roles_and_tables():
    t = Tracker()
    reg = t.feed(0, ANN, SERVER, bytes(header("reg", 1, "Ann", ANN[1])))
    assert (reg.src_name, reg.dst_name) == ("Ann", "server")  # only servers get registrations
    table = Table(version=1, entries=[Entry(client="Bob", ip=BOB[0], port=BOB[1])])
    t.feed(1000, SERVER, ANN, bytes(header("table", 9, "server", SERVER[1]) / table))
    msg = t.feed(2000, ANN, BOB, bytes(header("pri_msg", 2, "Ann", ANN[1]) / PriMsg(text="hi")))
    assert (msg.src_name, msg.dst_name) == ("Ann", "Bob")
    assert t.name((HOST, 1)) == "127.0.0.1:1"


def test_retries_acks_round_trips_and_unanswered():
    t = Tracker()
    data = bytes(header("pri_msg", 5, "Ann", ANN[1]) / PriMsg(text="hi"))
    tries = [t.feed(1_000_000 + i * 500_000, ANN, BOB, data) for i in range(3)]
    assert [e.retry for e in tries] == [0, 1, 2]
    ack = t.feed(2_000_300, BOB, ANN, bytes(header("ack", 70, "Bob", BOB[1]) / Ack(ack_id=5)))
    assert ack.request is tries[2] and ack.rtt == 300
    assert "↩ pri_msg #5 retry 2 rtt 0.30 ms" in views.line(ack).plain
    again = t.feed(2_000_900, BOB, ANN, bytes(header("ack", 70, "Bob", BOB[1]) / Ack(ack_id=5)))
    assert again.repeat == 1
    lost = t.feed(3_000_000, ANN, SERVER, bytes(header("dereg", 6, "Ann", ANN[1])))
    assert [ex.tries for ex in t.unanswered()] == [[lost]]
    stats = t.stats()
    assert (stats.retransmissions, stats.unanswered, stats.rtt_median, stats.rtt_p99) == (2, 1, 300, 300)
    assert stats.per_node["Ann"] == (4, 2) and stats.per_type["pri_msg"] == 3


def test_a_request_the_end_of_the_capture_cut_off_is_waiting_not_unanswered():
    t = Tracker()
    lost = t.feed(1_000_000, ANN, BOB, bytes(header("pri_msg", 5, "Ann", ANN[1]) / PriMsg(text="hi")))
    late = t.feed(1_400_000, ANN, SERVER, bytes(header("dereg", 6, "Ann", ANN[1])))
    assert traffic.ANSWER_WINDOW == 500_000  # the nodes' default time between tries
    unanswered, waiting = t.without_answer(1_500_000)  # a window after the first, not after the second
    assert ([ex.tries for ex in unanswered], [ex.tries for ex in waiting]) == ([[lost]], [[late]])
    assert (t.stats(1_500_000).unanswered, t.stats(1_500_000).waiting) == (1, 1)
    assert [len(found) for found in t.without_answer(1_900_000)] == [2, 0]


def test_one_ack_answering_several_group_messages_is_matched_to_each():
    t = Tracker()
    grp_msg = [bytes(header("grp_msg", i, "server", SERVER[1]) / GrpMsg(group="g", origin="Bob", text="hi")) for i in (1, 2, 3)]
    sent = [t.feed(1000 * i, SERVER, ANN, data) for i, data in enumerate(grp_msg)]
    batch = Ack(ack_id=1, also=[MsgId(id=3), MsgId(id=99)])  # 99: a request the capture did not see
    ack = t.feed(5000, ANN, SERVER, bytes(header("ack", 70, "Ann", ANN[1]) / batch))
    assert ack.request is sent[0] and ack.also == [sent[2]] and ack.rtt == 5000
    line = views.line(ack).plain
    assert "ok also #3 #99" in line and "↩ grp_msg #1 rtt 5.00 ms, and 1 more" in line, line
    assert [ex.tries for ex in t.unanswered()] == [[sent[1]]]
    assert t.stats().rtt_samples == 2
    rec = views.record(ack)
    assert rec["answers"]["id"] == 1 and rec["also_answers"] == [{"type": "grp_msg", "id": 3, "retry": 0}]


def test_an_ack_answers_the_request_on_its_own_path_only():
    t = Tracker()
    t.feed(0, ANN, MIRROR, bytes(header("pri_msg", 5, "Ann", ANN[1]) / PriMsg(text="hi")))
    hop = t.feed(100, MIRROR, BOB, bytes(header("pri_msg", 5, "Ann", ANN[1]) / PriMsg(text="hi")))
    assert hop.relayed and hop.retry == 0  # the proxy's copy is not a retransmission
    ack = t.feed(400, BOB, MIRROR, bytes(header("ack", 1, "Bob", BOB[1]) / Ack(ack_id=5)))
    assert ack.request is hop and ack.rtt == 300
    assert len(t.unanswered()) == 1  # Ann's hop waits for the ack the proxy relays


def test_percentile_is_nearest_rank():
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([5, 1, 9], 50) == 5
    assert percentile([7], 99) == 7
    assert percentile([], 99) is None  # nothing measured: no figure, not an error


def test_proxy_log_marks_drops_and_adds_unseen_ones():
    t = Tracker()
    t.feed(0, BOB, SERVER, bytes(header("reg", 1, "Bob", BOB[1])))  # names Bob's address
    data = bytes(header("pri_msg", 5, "Ann", ANN[1]) / PriMsg(text="hi"))
    events = [t.feed(1_000_000, ANN, BOB, data), t.feed(1_500_000, ANN, BOB, data)]
    rows = [
        {"time": 1.0002, "from": "Ann", "to": "Bob", "type": "pri_msg", "id": 5, "action": "drop"},
        {"time": 1.5002, "from": "Ann", "to": "Bob", "type": "pri_msg", "id": 5, "action": "pass"},
        {"time": 2.0, "from": "Bob", "to": "Ann", "type": "ack", "id": 8, "action": "drop"},
        # what the proxy dropped of other protocols: nothing of the chat's to draw
        {"time": 2.1, "from": "127.0.0.1:5353", "to": "server", "type": None, "id": None, "action": "drop"},
        {"time": 2.2, "from": "127.0.0.1:5353", "to": "server", "type": "DNS", "id": None, "action": "drop"},
    ]
    unseen = traffic.apply_proxy_log(t, events, rows)
    assert [e.dropped for e in events] == [True, False]
    assert [(e.src_name, e.dst_name, e.kind, e.rel) for e in unseen] == [("Bob", "Ann", "ack", 2_000_000)]
    drawn = [text.plain for text in views.ladder(t, events + unseen)]
    assert drawn[0].split() == ["Ann", "Bob"]
    assert "✕" in drawn[2] and "✕" in drawn[4] and "▶" in drawn[3]


def test_malformed_chat_datagrams_are_shown_not_fatal():
    t = Tracker()
    whole = bytes(header("reg_ack", 1, "server", SERVER[1]) / RegAck(ack_id=9))
    event = t.feed(0, SERVER, ANN, whole[:-3])
    assert event.kind == "malformed" and event.error
    assert "malformed" in views.line(event).plain
    assert views.record(event)["error"] == event.error


def test_a_datagram_of_another_protocol_version_is_labelled():
    t = Tracker()
    old = bytearray(bytes(header("reg", 1, "Ann", ANN[1])))
    old[2] = VERSION - 1
    event = t.feed(0, ANN, SERVER, bytes(old))
    assert event.kind == "other_version" and not event.is_request
    assert f"chat protocol version {VERSION - 1}; this tool reads version {VERSION}" in views.line(event).plain
    from scapy.layers.inet import IP, UDP

    from tools.sniff import udp_datagram

    frame = IP(src=ANN[0], dst=SERVER[0]) / UDP(sport=ANN[1], dport=SERVER[1]) / bytes(old)
    assert udp_datagram(IP(bytes(frame)), set()) is not None, "the sniffer shows it, labelled"


SPOOF = (HOST, 40001)  # a second client, at another port, that says it is Ann


def _registered(t: Tracker, addr, name: str, at: int, msg_id: int):
    """``name`` registers from ``addr``: its reg, the server's ok reg_ack, its confirm and the ok
    that starts its session."""
    t.feed(at, addr, SERVER, bytes(header("reg", msg_id, name, addr[1])))
    t.feed(at + 100, SERVER, addr, bytes(header("reg_ack", 900 + msg_id, "server", SERVER[1]) / RegAck(ack_id=msg_id)))
    t.feed(at + 200, addr, SERVER, bytes(header("confirm", 500 + msg_id, name, addr[1])))
    t.feed(at + 300, SERVER, addr, bytes(header("ack", 950 + msg_id, "server", SERVER[1]) / Ack(ack_id=500 + msg_id)))


def test_a_second_client_claiming_a_registered_name_is_named_by_its_address_and_shown_as_claiming_it():
    t = Tracker()
    _registered(t, ANN, "Ann", 0, 1)
    _registered(t, BOB, "Bob", 1000, 2)
    real = t.feed(2000, ANN, BOB, bytes(header("pri_msg", 3, "Ann", ANN[1]) / PriMsg(text="hi")))
    fake = t.feed(3000, SPOOF, BOB, bytes(header("pri_msg", 4, "Ann", SPOOF[1]) / PriMsg(text="pay me")))
    ack = t.feed(3100, BOB, SPOOF, bytes(header("ack", 70, "Bob", BOB[1]) / Ack(ack_id=4)))
    assert (real.src_name, real.claimed) == ("Ann", None)
    assert (fake.src_name, fake.claimed) == ("127.0.0.1:40001", "Ann")
    assert (ack.dst_name, t.name(SPOOF), t.name(ANN)) == ("127.0.0.1:40001", "127.0.0.1:40001", "Ann")
    assert "127.0.0.1:40001 (claims Ann) → Bob" in views.line(fake).plain
    assert "Ann →" not in views.line(fake).plain.replace("(claims Ann) →", "")
    rec = views.record(fake)
    assert (rec["from"], rec["src"], rec["claimed"]) == ("127.0.0.1:40001", "127.0.0.1:40001", "Ann")
    assert views.record(real)["claimed"] is None
    stats = t.stats()
    assert stats.false_claims == {"127.0.0.1:40001": {"Ann": 1}}
    assert stats.per_node["Ann"] == (3, 2) and stats.per_node["127.0.0.1:40001"] == (1, 1)  # reg, confirm, pri_msg; their answers
    assert views.stats_record(stats)["false_claims"] == {"127.0.0.1:40001": {"Ann": 1}}
    # The ladder: the false Ann has a column of its own, and her arrow says whose name she used.
    drawn = [text.plain for text in views.ladder(t, [real, fake, ack])]
    names = drawn[0].split()
    assert sorted(names) == ["127.0.0.1:40001", "Ann", "Bob"], names
    x = {name: drawn[0].index(name) + len(name) // 2 for name in names}
    real_row, fake_row = drawn[2], drawn[3]
    assert "(claims Ann)" in fake_row and "(claims" not in real_row
    between = lambda row, a, b: row[min(x[a], x[b]) + 2:max(x[a], x[b]) - 1]  # noqa: E731
    assert set(between(fake_row, "127.0.0.1:40001", "Bob")) - set(" ") and "(claims Ann)" in between(fake_row, "127.0.0.1:40001", "Bob")
    assert fake_row[x["Ann"]] in "│┼", "the false Ann's arrow must not start in Ann's column"
    assert "sent in the name of another address" in drawn[-1]


def test_the_server_decides_who_holds_a_name():
    t = Tracker()
    # Unregistered, a claim names its address (the reg before its answer reads as Ann's)...
    first = t.feed(0, SPOOF, SERVER, bytes(header("reg", 1, "Ann", SPOOF[1])))
    assert (first.src_name, first.claimed) == ("Ann", None)
    # ...but the server gives the name to another address: that one holds it now.
    _registered(t, ANN, "Ann", 1000, 2)
    assert t.name(ANN) == "Ann"
    later = t.feed(2000, SPOOF, BOB, bytes(header("pri_msg", 3, "Ann", SPOOF[1]) / PriMsg(text="hi")))
    assert later.claimed == "Ann"


def test_a_refused_registration_takes_back_the_name_it_claimed():
    t = Tracker()
    t.feed(0, SPOOF, SERVER, bytes(header("reg", 1, "Ann", SPOOF[1])))
    refusal = next(code for code, name in STATUSES.items() if name != "ok")
    t.feed(100, SERVER, SPOOF, bytes(header("reg_ack", 900, "server", SERVER[1]) / RegAck(ack_id=1, status=refusal)))
    assert t.name(SPOOF) == "127.0.0.1:40001"
    _registered(t, ANN, "Ann", 1000, 2)
    assert t.name(ANN) == "Ann"


def test_an_ok_reg_ack_names_nobody_until_the_confirm_is_answered():
    """A claimant of a name held online elsewhere gets an ok reg_ack, and is refused at its
    confirm once the owner has answered the server's probe: it never held the name."""
    t = Tracker()
    _registered(t, ANN, "Ann", 0, 1)
    t.feed(1000, SPOOF, SERVER, bytes(header("reg", 2, "Ann", SPOOF[1])))
    t.feed(1100, SERVER, SPOOF, bytes(header("reg_ack", 902, "server", SERVER[1]) / RegAck(ack_id=2)))
    confirm = t.feed(1200, SPOOF, SERVER, bytes(header("confirm", 3, "Ann", SPOOF[1])))
    assert (confirm.src_name, confirm.claimed) == ("127.0.0.1:40001", "Ann")
    taken = next(code for code, name in STATUSES.items() if name == "name_taken")
    t.feed(1300, SERVER, SPOOF, bytes(header("ack", 903, "server", SERVER[1]) / Ack(ack_id=3, status=taken)))
    assert (t.name(ANN), t.name(SPOOF)) == ("Ann", "127.0.0.1:40001")


def test_a_table_from_another_than_the_server_names_nobody():
    t = Tracker()
    _registered(t, ANN, "Ann", 0, 1)
    forged = Table(version=1, entries=[Entry(client="Ann", ip=SPOOF[0], port=SPOOF[1])])
    t.feed(1000, BOB, ANN, bytes(header("table", 9, "Bob", BOB[1]) / forged))
    assert (t.name(SPOOF), t.name(ANN)) == ("127.0.0.1:40001", "Ann")


def test_the_proxy_relaying_a_clients_datagram_is_no_false_claim():
    t = Tracker()
    _registered(t, ANN, "Ann", 0, 1)
    hop = t.feed(1000, MIRROR, BOB, bytes(header("pri_msg", 5, "Ann", ANN[1]) / PriMsg(text="hi")))
    assert hop.relayed and (hop.src_name, hop.claimed) == ("Ann", None)


def test_a_long_ladder_is_cut_into_pages_each_with_the_names_and_the_legend():
    t = Tracker()
    events = [t.feed(i * 1000, ANN, BOB, bytes(header("pri_msg", i, "Ann", ANN[1]) / PriMsg(text=f"m{i}")))
              for i in range(1, 131)]
    rows = views.ladder(t, events)
    pages = views.ladder_pages(rows, 60)
    assert [len(page) - 3 for page in pages] == [60, 60, 10]
    for page in pages:
        assert page[0].plain.split() == ["Ann", "127.0.0.1:7002"] and page[-1].plain == rows[-1].plain
    assert [row.plain for page in pages for row in page[2:-1]] == [row.plain for row in rows[2:-1]]
    assert len(views.ladder_pages(views.ladder(t, events[:60]), 60)) == 1


def test_false_claims_of_ever_new_names_are_counted_in_bounded_room():
    t = Tracker(max_claims=3)
    for i, name in enumerate(["Ann", "Bob", "Cid", "Dan", "Eve"]):
        _registered(t, (HOST, 7100 + i), name, 1000 * i, 10 + i)
    for i, name in enumerate(["Ann", "Bob", "Cid", "Dan", "Eve"]):
        t.feed(9000 + i, SPOOF, BOB, bytes(header("pri_msg", 50 + i, name, SPOOF[1]) / PriMsg(text="x")))
    assert t.stats().false_claims == {"127.0.0.1:40001": {"Ann": 1, "Bob": 1, "Cid": 1, traffic.ELLIPSIS: 2}}
