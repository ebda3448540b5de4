"""Identity, limits and floods against real ChatApp.py processes, from plain UDP
sockets on 127.0.0.1 (and a raw socket, as root, where a forged source address is
the point): nobody acts in another client's name, peers and the server accept
datagrams only from whom they claim to come, limits answer with clear lines, and
one flooding source does not starve the others."""

from __future__ import annotations

import random
import re
import socket
import threading
import time

import pytest

from proto import MAX_NAME_BYTES, MAX_TEXT_BYTES, MSG_TYPES, VERSION, Ack, ChatHeader, CreateGroup, Entry, GrpMsg, JoinGroup, Kick, LeaveGroup
from proto import PriMsg, SendGroup, Table
from tests.procs import FAST, HOST, WAIT, free_port, in_group, run_plain
from tests.security_tools import Peer, ReceiveQueues, drain, finish, needs_root, spoof, spoof_all, status


def addr(proc) -> tuple[str, int]:
    return (HOST, proc.port)


def acks(peer: Peer) -> set[int]:
    """The request ids answered by the acks already queued on ``peer`` (table updates skipped)."""
    return {m.payload.ack_id for m in peer.pending() if MSG_TYPES[m.type] == "ack"}


def server_events(server, since: int) -> list[str]:
    """Lines the server printed since ``since`` that are not the first-of-a-kind drop notes."""
    return [line for line in server.lines_since(since) if line.startswith(">>>") and "Dropped" not in line]


# -- requests in someone else's name ----------------------------------------------------------


def test_requests_in_another_clients_name_are_refused(cluster, peers):
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    mallory = peers()
    mallory.register("Mallory", addr(server))
    server.expect_clients({"Mallory": "online"})
    drain(server)
    mark = server.mark()
    stranger = peers()
    guessed = random.getrandbits(64)
    attempts = [
        stranger.header("dereg", sender="Ann", token=guessed),
        stranger.header("send_group", sender="Ann", token=guessed) / SendGroup(group="g", text="forged group"),
        stranger.header("kick", sender="Ann", token=guessed) / Kick(target="Bob"),
        stranger.header("create_group", sender="Bob", token=0) / CreateGroup(group="h"),
        stranger.header("leave_group", sender="Ann", token=guessed) / LeaveGroup(group="g"),
    ]
    for pkt in attempts:  # another address: answered, so a genuine client could tell its user
        assert status(stranger.request(pkt, addr(server))) == "not_registered"
    # A registered client's valid token does not work for another name either.
    assert status(mallory.request(mallory.header("dereg", sender="Ann"), addr(server))) == "not_registered"
    assert status(mallory.request(mallory.header("list_groups"), addr(server))) == "ok"  # her own name works

    ann.sendline("list_members")  # Ann still online, still in g, alone
    ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann")
    bob.sendline("list_groups")  # no group h
    bob.expect_lines(">>> Available group chats:", ">>> g")
    # the server's listing, to its last line (its lines may come after Bob's: another process)
    server.expect_lines(">>> Client Bob requested listing groups, current groups:", ">>> g")
    assert server_events(server, mark) == [
        ">>> Client Mallory requested listing groups, current groups:",
        ">>> g",
        ">>> Client Ann requested listing members of group g:",
        ">>> Ann",
        ">>> Client Bob requested listing groups, current groups:",
        ">>> g",
    ]
    assert "forged group" not in bob.text + ann.text
    finish(ann)
    finish(bob)  # the clients first, while the server can acknowledge their dereg
    counts = finish(server)
    assert counts["unregistered"] == len(attempts) + 1, counts


def test_reregistration_kills_the_old_token(cluster, peers):
    """A new registration issues a new token: the old one, even from the right address,
    is a forgery, dropped without an answer (the answer would go to the real client)."""
    server = cluster.server()
    raw = peers()
    first = raw.register("Raw", addr(server))
    old_token = raw.token
    again = raw.register("Raw", addr(server))  # same name, same address, a new request id
    assert raw.token != old_token and again.payload.session != first.payload.session
    stale = raw.header("create_group", token=old_token) / CreateGroup(group="stale")
    raw.send(stale, addr(server))
    fresh = raw.header("list_groups")
    answer = raw.request(fresh, addr(server))
    assert status(answer) == "ok" and not answer.payload.items  # the stale request created nothing
    assert stale.msg_id not in acks(raw)
    server.expect(r">>> Dropped forged datagram from 127\.0\.0\.1:\d+ \(create_group in the name of 'Raw'")
    assert finish(server)["forged"] == 1


@needs_root
def test_forged_source_with_a_wrong_token_is_dropped(cluster, peers):
    """From Ann's own address (a raw socket forges it) but without her token: no effect, no answer."""
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    drain(server)
    mark = server.mark()
    forger = peers()  # builds the datagrams; the raw socket sends them as if from Ann
    as_ann = {"sender": "Ann", "port": ann.port, "token": random.getrandbits(64)}
    spoof(bytes(forger.header("dereg", **as_ann)), addr(ann), addr(server))
    spoof(bytes(forger.header("create_group", **as_ann) / CreateGroup(group="spoofed")), addr(ann), addr(server))
    ann.sendline("list_groups")  # sent after the forgeries, so answered after they were handled
    ann.expect_line(">>> No available group right now")
    server.expect(r">>> Dropped forged datagram from 127\.0\.0\.1:\d+ \(dereg in the name of 'Ann'")
    bob.sendline("send Ann still here?")
    bob.expect_line(">>> Message received by Ann.")
    ann.expect_line(">>> Bob: still here?")
    assert not [line for line in server_events(server, mark) if "table updated" in line], server.text[mark:]
    finish(ann)
    finish(bob)
    assert finish(server)["forged"] == 2


# -- registration proves the address -----------------------------------------------------------


@needs_root
def test_a_forged_reg_from_a_live_clients_address_leaves_its_session(cluster, peers):
    """A reg in Ann's name, and one in a new name, forged from Ann's address: the server answers
    Ann (who never asked, so ignores it) and waits for a confirm that never comes.  Ann's session
    and her group membership go on."""
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    in_group([ann, bob], server)
    drain(server)
    mark = server.mark()
    forger = peers()
    spoof_all([(bytes(forger.header("reg", sender=name, port=ann.port, token=0)), addr(ann)) for name in ("Ann", "Mallory")],
              addr(server))
    bob.sendline("send_group after the forgery")  # through the server, after the forged regs
    bob.expect_line(">>> (g) Message received by Server.")
    ann.expect_line(">>> (g) Group_Message Bob: after the forgery")
    ann.sendline("list_members")
    ann.expect_lines(">>> (g) Members in the group g:", ">>> (g) Ann", ">>> (g) Bob")
    server.expect_line(">>> Client Ann requested listing members of group g:")
    assert not [line for line in server_events(server, mark) if "updated" in line], server.text[mark:]
    assert "Mallory" not in server.text


def _received_bytes(sock, source) -> tuple[int, list[str]]:
    """Bytes and message types of every datagram from ``source`` waiting on ``sock``, without waiting.
    (Only the server's: 2,000 ports taken at random may include one that a process of another test,
    run at the same time, still sends to.)"""
    total, kinds = 0, []
    sock.setblocking(False)
    while True:
        try:
            data, sender = sock.recvfrom(65536)
        except BlockingIOError:
            return total, kinds
        if sender[:2] != source:
            continue
        total += len(data)
        kinds.append(MSG_TYPES.get(data[3], "?") if len(data) > 3 else "?")


@needs_root
def test_reg_floods_forged_from_victims_amplify_nothing_and_stall_no_one(cluster, peers):
    """2,000 regs in new names, forged from 2,000 victims' addresses (a few of them twice, and a
    retransmission): each victim receives at most three times the bytes sent in its name (QUIC's
    anti-amplification rule), nothing but reg_acks, and a real newcomer is still seen at once."""
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    victims = []
    try:
        for _ in range(2000):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            victims.append(sock)
            sock.bind((HOST, 0))
        forged, sent = [], {}
        for i, victim in enumerate(victims):
            where = victim.getsockname()
            names = [f"V{i}"] + ([f"W{i}"] if i < 20 else [])
            for msg_id, name in enumerate(names, 1):
                data = bytes(ChatHeader(type="reg", msg_id=msg_id, port=where[1], sender=name))
                forged += [(data, where)] * (2 if i < 10 else 1)  # the first ten: a retransmission each
        for data, where in forged:
            sent[where] = sent.get(where, 0) + len(data)
        spoof_all(forged, addr(server))
        # Sent after the flood, so answered after every forged reg was handled and answered.
        sync = peers()
        assert status(sync.request(sync.header("list_groups", sender="Sync"), addr(server))) == "not_registered"
        received = {victim.getsockname(): _received_bytes(victim, addr(server)) for victim in victims}
    finally:
        for victim in victims:  # closed before more terminals are opened (pexpect's select() stops at 1024)
            victim.close()
    over = {where: (got, sent[where]) for where, (got, _) in received.items() if got > 3 * sent[where]}
    assert not over, f"{len(over)} victims got more than 3x their bytes, e.g. {list(over.items())[:3]}"
    kinds = {kind for _, got in received.values() for kind in got}
    assert kinds == {"reg_ack"}, kinds
    cy = cluster.client("Cy", server)
    ann.expect_clients({"Cy": "online"})
    bob.expect_clients({"Cy": "online"})
    cy.sendline("send Ann hello")
    ann.expect_line(">>> Cy: hello")
    table = server.expect_clients({"Cy": "online"}, since=0)
    assert set(table) == {"Ann", "Bob", "Cy"}, "no forged name was registered"
    for proc in (ann, bob, cy):
        finish(proc)  # the clients first, while the server can acknowledge their dereg
    counts = finish(server)
    assert counts["unconfirmed reg"] > 0, counts


def test_a_node_names_each_peer_speaking_another_version_once(cluster, peers):
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    old, other = peers(), peers()
    v1 = bytearray(bytes(old.header("reg", sender="Old")))
    v1[2] = VERSION - 1
    for _ in range(3):
        old.send(bytes(v1), addr(server))
        old.send(bytes(v1), addr(ann))
    other.send(bytes(v1), addr(server))
    # Sent after them, so read after them: every datagram of version 1 has been handled by then.
    bob.sendline("send Ann sync")
    ann.expect_line(">>> Bob: sync")
    bob.sendline("list_groups")
    server.expect_line(">>> Client Bob requested listing groups, current groups:")
    line = "{}:{} speaks chat protocol version {}; this node speaks version {}"
    for proc, peer, times in ((server, old, 1), (server, other, 1), (ann, old, 1), (ann, other, 0)):
        assert proc.text.count(line.format(*peer.addr, VERSION - 1, VERSION)) == times, proc.text
    assert finish(ann)["other version"] == 3
    finish(bob)
    counts = finish(server)
    assert counts["other version"] == 4 and counts["malformed"] == 0, counts


def test_kick_is_verified_by_probing_the_reported_client(cluster, peers):
    server = cluster.server(*FAST)  # the probe of a silent client gives up after 0.3 s
    reporter, target = peers(), peers()
    reporter.register("Rep", addr(server))
    target.register("Tgt", addr(server))

    # The target answers the server's probe: the report is not believed.
    assert status(reporter.request(reporter.header("kick") / Kick(target="Tgt"), addr(server))) == "ok"
    probes = _answer_probes_until_answered(target, server)
    assert probes, "the server did not probe the reported client"
    # Its ack was handled before the request that followed it: the probe is over, answered.
    drain(server)
    assert "did not answer the server's probe" not in server.text

    # The target stays silent: only now is it marked offline.
    assert status(reporter.request(reporter.header("kick") / Kick(target="Tgt"), addr(server))) == "ok"
    server.expect_line(">>> Client Tgt did not answer the server's probe, marked offline")
    assert server.text.count("did not answer the server's probe") == 1
    # A kick of a name nobody registered does nothing either.
    assert status(reporter.request(reporter.header("kick") / Kick(target="Nobody"), addr(server))) == "no_such_user"


def _answer_probes_until_answered(peer: Peer, server) -> list:
    """Ack every probe from the server, then send a request; return the probes seen
    by the time its answer arrives (the server handled the acks before it)."""
    probes = []
    deadline = time.monotonic() + WAIT
    while not probes and time.monotonic() < deadline:
        got = peer.receive(0.2)
        if got is not None and MSG_TYPES[got[0].type] == "probe":
            probes.append(got[0])
    for probe in probes:
        ack = peer.header("ack") / Ack(ack_id=probe.msg_id, status="ok")
        peer.send(ack, addr(server))
    seen: list = []
    peer.request(peer.header("list_groups"), addr(server), seen)
    for late in [m for m in seen if MSG_TYPES[m.type] == "probe"]:  # a retransmission crossed our ack
        peer.send(peer.header("ack") / Ack(ack_id=late.msg_id, status="ok"), addr(server))
        probes.append(late)
    return probes


# -- datagrams to a client from the wrong place -----------------------------------------------------


def test_client_accepts_private_messages_only_from_the_tables_sender(cluster, peers):
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    raw, stranger = peers(), peers()
    raw.register("Raw", addr(server))
    ann.expect_clients({"Raw": "online"})
    session, to = raw.session, raw.session_of("Ann")

    def pri_msg(peer: Peer, text: str, sender: str = "Raw", session: int = session, **fields):
        return peer.header("pri_msg", sender=sender, token=0xD1, **fields) / PriMsg(session=session, to_session=to, text=text)

    refused = [
        (raw, pri_msg(raw, "wrong name", sender="Bob")),  # Bob's name, Raw's address
        (stranger, pri_msg(stranger, "wrong address")),  # Raw's name and session, another address
        (raw, pri_msg(raw, "wrong session", session=session ^ 0x5A5A5A5A)),  # an old or guessed session
    ]
    for peer, pkt in refused:
        peer.send(pkt, addr(ann))
    good = pri_msg(raw, "the real one")
    assert status(raw.request(good, addr(ann))) == "ok"
    older = pri_msg(raw, "older than shown", msg_id=good.msg_id - 3)  # a replay from within the session
    raw.send(older, addr(ann))
    again = raw.request(good, addr(ann))  # a retransmission: acked again, shown once
    assert status(again) == "ok"
    later = pri_msg(raw, "a later one")
    assert status(raw.request(later, addr(ann))) == "ok"
    ann.expect_lines(">>> Raw: the real one", ">>> Raw: a later one")
    acked = acks(raw) | acks(stranger)
    assert not acked & {pkt.msg_id for _, pkt in refused} and older.msg_id not in acked
    for text in ("wrong name", "wrong address", "wrong session", "older than shown"):
        assert text not in ann.text

    # Offline peers: after Raw deregisters, its address and session are refused too.
    assert status(raw.request(raw.header("dereg"), addr(server))) == "ok"
    ann.expect_clients({"Raw": "offline"})
    offline = pri_msg(raw, "from an offline peer")
    raw.send(offline, addr(ann))
    bob.sendline("send Ann sync")
    ann.expect_line(">>> Bob: sync")
    assert "from an offline peer" not in ann.text and offline.msg_id not in acks(raw)
    counts = finish(ann)
    assert counts["unknown sender"] == 4 and counts["replayed"] == 1, counts


def test_server_only_datagrams_from_elsewhere_are_ignored(cluster, peers):
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    bob.sendline("join_group g")
    ann.sendline("join_group g")
    ann.expect_line(">>> Entered group g successfully")
    bob.expect_line(">>> Entered group g successfully")
    stranger = peers()
    here = stranger.addr
    forged = [
        stranger.header("table", sender="server")
        / Table(version=10_000, base=0, entries=[Entry(client="Mallory", ip=here[0], port=here[1], online=1)]),
        stranger.header("grp_msg", sender="server") / GrpMsg(group="g", origin="Bob", text="forged group message"),
        stranger.header("probe", sender="server"),
    ]
    for pkt in forged:
        stranger.send(pkt, addr(ann))
    bob.sendline("send_group the real one")  # through the server: reaches Ann after the forgeries
    ann.expect_line(">>> (g) Group_Message Bob: the real one")
    assert not stranger.pending(), "a client acknowledged a server-only datagram from elsewhere"
    ann.sendline("leave_group")
    ann.expect_line(">>> Leave group chat g")
    ann.sendline("send Mallory hi")
    ann.expect_line(">>> User Mallory does not exist")
    assert "forged" not in ann.text
    assert finish(ann)["not from server"] == 3


# -- limits -------------------------------------------------------------------------------------


def test_server_full(cluster):
    server = cluster.server("--max-clients", "2")
    cluster.clients(["Ann", "Bob"], server)
    cid = cluster.client("Cid", server, register=False)
    cid.expect_line(">>> The server is full. Try again later.")
    assert cid.wait_exit() == 1
    assert "Cid" not in server.text


def test_too_many_groups(cluster):
    server = cluster.server("--max-groups", "1")
    ann = cluster.client("Ann", server)
    ann.sendline("create_group g1")
    ann.expect_line(">>> Group g1 created by Server.")
    ann.sendline("create_group g2")
    ann.expect_line(">>> Group g2 not created: the server has too many groups.")
    server.expect_line(">>> Client Ann creating group g2 failed, too many groups")
    ann.sendline("list_groups")
    ann.expect_lines(">>> Available group chats:", ">>> g1")


@pytest.mark.e2e  # ChatApp.py as a process
def test_overlong_name_is_refused_on_the_command_line():
    port, other = free_port(), free_port()
    done = run_plain("-c", "N" * (MAX_NAME_BYTES + 1), HOST, str(port), str(other))
    assert done.returncode == 1 and done.stderr.strip() == "Invalid username", done
    assert "Traceback" not in done.stderr


def test_overlong_group_name_is_refused_with_a_clear_line(cluster):
    server = cluster.server()
    ann = cluster.client("Ann", server)
    long_name = "g" * (MAX_NAME_BYTES + 1)
    ann.sendline(f"create_group {long_name}")
    # The line must say what is wrong: the length (not a ';' the name does not contain).
    line = ann.expect(r"^>>> .*\n", flags=re.MULTILINE).group(0)
    assert re.search(r"long|32 bytes", line), f"unclear refusal of a {MAX_NAME_BYTES + 1}-byte group name: {line!r}"
    ann.sendline(f"create_group {'g' * MAX_NAME_BYTES}")  # the limit itself is fine
    ann.expect_line(f">>> Group {'g' * MAX_NAME_BYTES} created by Server.")


def test_overlong_messages_are_refused_by_the_sender(cluster):
    """On a terminal with line editing (a plain terminal's line discipline cuts lines at 4095
    bytes before the client sees them); private messages: see test_e2e_interactive.py."""
    server = cluster.server()
    bob = cluster.client("Bob", server)
    ann = cluster.client("Ann", server, interactive=True)
    bob.expect_clients({"Ann": "online"})
    ann.sendline("create_group g")
    ann.expect_line(">>> Group g created by Server.")
    for proc in (ann, bob):
        proc.sendline("join_group g")
        proc.expect_line(">>> Entered group g successfully")
    fits = "é" * (MAX_TEXT_BYTES // 2)  # exactly the limit, in two-byte characters
    ann.paste(f"send_group {fits}")
    ann.send("\r")
    ann.expect_line(">>> (g) Message received by Server.")
    bob.expect_line(f">>> (g) Group_Message Ann: {fits}")
    ann.paste(f"send_group {fits}!")
    ann.send("\r")
    ann.expect(rf"^>>> (\(g\) )?Message too long \({MAX_TEXT_BYTES + 1} bytes of UTF-8; the limit is {MAX_TEXT_BYTES}\), "
               r"not sent\n", flags=re.MULTILINE)
    ann.sendline("send_group short")
    bob.expect_line(">>> (g) Group_Message Ann: short")
    assert bob.text.count(fits) == 1 and f"{fits}!" not in bob.text


def test_server_refuses_overlong_fields_from_a_hand_made_client(cluster, peers):
    """The sender's checks can be bypassed: the server applies the limits too."""
    server = cluster.server()
    bob = cluster.client("Bob", server)
    raw = peers()
    long_name = "n" * (MAX_NAME_BYTES + 1)
    refused = raw.request(raw.header("reg", sender=long_name), addr(server))
    assert status(refused) == "bad_name"
    raw.register("Raw", addr(server))
    bob.sendline("create_group g")
    bob.expect_line(">>> Group g created by Server.")
    bob.sendline("join_group g")
    bob.expect_line(">>> Entered group g successfully")
    assert status(raw.request(raw.header("create_group") / CreateGroup(group=long_name), addr(server))) == "bad_request"
    seen: list = []  # table updates, left unanswered: the server stops sending them after its tries
    assert status(raw.request(raw.header("join_group") / JoinGroup(group="g"), addr(server), seen)) == "ok"
    huge = "y" * (MAX_TEXT_BYTES + 1)
    answer = raw.request(raw.header("send_group") / SendGroup(group="g", text=huge), addr(server))
    # Not forwarded to the members: a group message longer than any client may send.
    assert status(answer) == "bad_request", f"a {len(huge)}-byte group message was {status(answer)}"
    assert huge not in bob.text


# -- one source flooding ------------------------------------------------------------------------


def _commands(ann, bob, round_: int) -> None:
    """Two clients' commands, each waited for: private, group and list requests."""
    group = f"f{round_}"
    ann.sendline(f"send Bob ping {round_}")
    ann.expect_line(">>> Message received by Bob.")
    bob.expect_line(f">>> Ann: ping {round_}")
    ann.sendline(f"create_group {group}")
    ann.expect_line(f">>> Group {group} created by Server.")
    bob.sendline("list_groups")
    bob.expect(rf"^>>> Available group chats:\n(>>> f\d+\n)*>>> {group}\n", flags=re.MULTILINE)
    for proc in (bob, ann):
        proc.sendline(f"join_group {group}")
        proc.expect_line(f">>> Entered group {group} successfully")
    ann.sendline(f"send_group hello {round_}")
    ann.expect_line(f">>> ({group}) Message received by Server.")
    bob.expect_line(f">>> ({group}) Group_Message Ann: hello {round_}")
    bob.sendline("list_members")
    bob.expect_lines(f">>> ({group}) Members in the group {group}:", f">>> ({group}) Bob", f">>> ({group}) Ann")
    for proc in (ann, bob):
        proc.sendline("leave_group")
        proc.expect_line(f">>> Leave group chat {group}")


FLOOD_SECONDS = 3.0  # longer than a request's five tries (2.5 s): a request can lose them all
FLOOD_MAX = 2_000_000  # datagrams: bounds the flood on a fast machine too


@pytest.mark.parametrize("source", ["registered", "unregistered"])
def test_one_flooding_source_does_not_starve_the_others(cluster, peers, source):
    server = cluster.server()
    ann, bob = cluster.clients(["Ann", "Bob"], server)
    started = time.monotonic()
    _commands(ann, bob, 0)
    quiet = time.monotonic() - started

    flooder = peers()
    if source == "registered":
        flooder.register("Flood", addr(server))
        # Valid requests that the server answers without printing anything (not in a group).
        first = flooder.new_id()
        template = bytes(flooder.header("leave_group", msg_id=first) / LeaveGroup(group="x"))
    else:
        first = 1
        template = bytes(flooder.header("list_groups", sender="Nobody", msg_id=first))
    sent = [0]

    def flood() -> None:
        # Each request with its own, growing message id: new requests, not retransmissions.
        head, tail = template[:4], template[8:]
        end = time.monotonic() + FLOOD_SECONDS
        while sent[0] < FLOOD_MAX and time.monotonic() < end:
            for _ in range(500):
                msg_id = (first + sent[0] + 1) & 0xFFFFFFFF
                try:
                    flooder.sock.sendto(head + msg_id.to_bytes(4, "big") + tail, addr(server))
                except OSError:
                    pass  # our own buffer is full: try the next one
                sent[0] += 1

    queues = ReceiveQueues()
    kernel_drops = queues(server.port)[1]
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        _commands(ann, bob, 1)
        flooded = time.monotonic() - started
        within = thread.is_alive()
    finally:
        thread.join(FLOOD_SECONDS + WAIT)
    kernel_drops = queues(server.port)[1] - kernel_drops
    queues.close()
    print(f"\n[{source} flood] the commands took {quiet:.2f} s without a flood and {flooded:.2f} s during a "
          f"{FLOOD_SECONDS:g} s flood of {sent[0]} datagrams from one socket "
          f"({'done before' if within else 'finished after'} the flood ended); "
          f"{kernel_drops} dropped by the kernel (the server's receive queue full)")
    finish(ann)
    finish(bob)
    counts = finish(server)
    print(f"[{source} flood] server drops: {dict(counts)}")
    assert counts["rate-limited"] > 0, counts
    if source == "unregistered":
        assert counts["unregistered"] > 0, counts
