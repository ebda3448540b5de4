"""The Lua dissector that sniff.py generates from the Scapy layer: tshark loads it
and decodes every field of every captured chat datagram to the layer's values."""

from __future__ import annotations

import json
import os
import re
import signal
import shutil
import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from proto import (
    MSG_TYPES, Ack, ChatHeader, CreateGroup, Entry, GrpMsg, JoinGroup, Kick, LeaveGroup, ListMembers, ListMore,
    MsgId, Name, PriMsg, RegAck, SendGroup, Table, decode
)
from proto.fields import Kind, layer_spec
from tests.captures import SNIFF, Processes, needs_root, run_tool
from tests.procs import HOST, ProxyProcess, quiet_port

# Not the layer's: generated from what the dissector finds across frames (an answer's request...).
EXCHANGE_FIELDS = ("chat.response_in", "chat.response_to", "chat.also_response_to", "chat.time", "chat.retry",
                   "chat.retransmission_of", "chat.duplicate_of")
SEPARATOR = "\x1f"  # between the values of a field that occurs more than once (list items)

pytestmark = pytest.mark.e2e  # sniff.py and tshark as processes


@pytest.fixture(scope="module")
def tshark() -> str:
    """tshark from the host; a test never installs software (.ci/run installs it)."""
    return shutil.which("tshark") or pytest.skip("tshark is not installed (apt-get install tshark; .ci/run does)")


@pytest.fixture(scope="module")
def dissector(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lua") / "chat.lua"
    path.write_text(run_tool(SNIFF, "--wireshark-dissector").stdout)
    return str(path)


def every_type() -> list[ChatHeader]:
    """One datagram of each message type, with lists, empty strings and non-ASCII text."""
    payloads = {  # the types that carry something
        "reg_ack": RegAck(ack_id=7, status="ok", token=0xFEDCBA9876543210, session=0x89ABCDEF),
        "ack": Ack(ack_id=8, status="not_in_group", items=[Name(value="g1"), Name(value="ünï"), Name(value="")],
                   also=[MsgId(id=9), MsgId(id=4_000_000_000)]),
        "table": Table(version=3, base=1, entries=[
            Entry(client="Ann", ip="10.1.2.3", port=7001, online=1, session=0xFFFFFFFF),
            Entry(client="Zoë", ip="127.0.0.1", port=65535, online=0, session=1),
        ]),
        "create_group": CreateGroup(group="g1"),
        "join_group": JoinGroup(group="g1"),
        "leave_group": LeaveGroup(group="g1"),
        "list_members": ListMembers(group="g1"),
        "send_group": SendGroup(group="g1", text="hi; all: ✓"),
        "grp_msg": GrpMsg(group="g1", origin="Ann", text="hi; all: ✓"),
        "pri_msg": PriMsg(session=0x5E55, to_session=0xB0B, text=""),
        "kick": Kick(target="Bob"),
        "list_more": ListMore(list="list_members", start=40, group="g1"),
    }
    packets = []
    for n, kind in enumerate(MSG_TYPES.values()):
        payload = payloads.get(kind)
        pkt = ChatHeader(type=kind, msg_id=4_000_000_000 + n, port=6000 + n, token=n * 0x0101010101010101,
                         sender="server" if n % 2 else "Ann")
        packets.append(decode(bytes(pkt / payload if payload is not None else pkt)))
    return packets


def expected_fields(pkt) -> dict[str, list]:
    """abbreviation -> values in order, named as the generator names them: chat.FIELD for the
    header, chat.LAYER.FIELD for the rest (LAYER: the Scapy layer's name in lower case)."""
    found: dict[str, list] = {}

    def walk(layer, prefix: str) -> None:
        for fld in layer_spec(type(layer)).fields:
            value = layer.getfieldval(fld.name)
            if fld.kind is Kind.LIST:
                for item in value:
                    walk(item, f"chat.{item.name.lower()}")
                continue
            found.setdefault(f"{prefix}.{fld.name}", []).append(value)

    walk(pkt, "chat")
    if pkt.payload.fields_desc:
        walk(pkt.payload, f"chat.{pkt.payload.name.lower()}")
    return found


def kinds() -> dict[str, str]:
    """How tshark prints each field: 'text', 'ip' or 'int'."""
    out = {}
    how = {Kind.TEXT: "text", Kind.BYTES: "text", Kind.IP: "ip", Kind.INT: "int", Kind.ENUM: "int"}
    layers = {layer_spec(type(p)) for p in every_type()} | {layer_spec(type(p.payload)) for p in every_type()}
    items = {item for layer in layers for item in layer.sub_layers()}
    for layer in layers | items:
        prefix = "chat" if layer.cls is ChatHeader else f"chat.{layer.title.lower()}"
        for fld in layer.fields:
            if fld.kind is not Kind.LIST:
                out[f"{prefix}.{fld.name}"] = how[fld.kind]
    return out


def tshark_fields(tshark: str, dissector: str, pcap: str, abbrevs: list[str]) -> list[dict[str, list[str]]]:
    command = [tshark, "-X", f"lua_script:{dissector}", "-r", pcap, "-o", "udp.try_heuristic_first:TRUE",
               "-T", "fields", "-E", f"aggregator={SEPARATOR}", "-E", "occurrence=a"]
    for abbrev in abbrevs:
        command += ["-e", abbrev]
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Lua" not in done.stderr, done.stderr  # a script error is only a warning to tshark
    frames = []
    for row in done.stdout.splitlines():
        cells = row.split("\t")
        frames.append({a: cell.split(SEPARATOR) for a, cell in zip(abbrevs, cells) if cell})
    return frames


def check(frames: list[dict[str, list[str]]], packets: list) -> None:
    how = kinds()
    assert len(frames) == len(packets)
    for shown, pkt in zip(frames, packets):
        expected = expected_fields(pkt)
        assert set(shown) <= set(expected), (pkt.summary(), shown)
        for abbrev, values in expected.items():
            got = shown.get(abbrev, [""])  # tshark prints nothing for a lone empty string
            if how[abbrev] == "int":
                assert [int(v, 0) for v in got] == values, (abbrev, got, values)
            else:
                assert got == [str(v) for v in values], (abbrev, got, values)


def test_the_dissector_is_generated_from_the_layer(dissector):
    script = open(dissector, encoding="utf-8").read()
    abbrevs = re.findall(r'ProtoField\.\w+\("([^"]+)"', script)
    assert sorted(abbrevs) == sorted([*kinds(), *EXCHANGE_FIELDS])  # the layer's fields, and what links the frames
    assert "register_heuristic" in script


@pytest.fixture(scope="module")
def every_pcap(tmp_path_factory) -> str:
    """A capture of ``every_type()``, one datagram per frame."""
    frames = [
        Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=41000 + n, dport=42000 + n) / Raw(bytes(pkt))
        for n, pkt in enumerate(every_type())
    ]
    for n, frame in enumerate(frames):
        frame.time = 1_700_000_000 + n / 10
    pcap = str(tmp_path_factory.mktemp("every") / "every.pcap")
    wrpcap(pcap, frames)
    return pcap


def test_tshark_decodes_every_field_of_every_type(tshark, dissector, every_pcap):
    check(tshark_fields(tshark, dissector, every_pcap, sorted(kinds())), every_type())


def test_tshark_shows_one_chat_protocol_with_readable_labels(tshark, dissector, every_pcap):
    def run(*args: str) -> str:
        done = subprocess.run([tshark, "-X", f"lua_script:{dissector}", "-r", every_pcap, *args], capture_output=True,
                              text=True, encoding="utf-8", timeout=120)
        assert done.returncode == 0 and "Lua" not in done.stderr, done.stderr
        return done.stdout

    # One protocol entry per datagram, found by the heuristic (any port) or by "decode as".
    for how in ([], ["-d", "udp.port==42000,chat"]):
        protocols = run("-T", "fields", "-e", "frame.protocols", *how).split()
        assert len(protocols) == len(every_type()) and all(p.endswith(":udp:chat") for p in protocols), protocols
    # The chat tree: each layer a subtree, each field labelled in words, from the field model.
    tree = run("-V", "-O", "chat")
    labels = set()
    for line in tree.splitlines():
        if line.startswith("        ") and ":" in line:  # "label: value"; an empty text has no space after it
            labels.add(line.strip().partition(":")[0])
    for label in ("Message ID", "Sender", "Private message text", "Private message to session", "Registration ack status",
                  "Group message origin", "Entry client", "Entry IP", "Ack ID", "Name value"):
        assert label in labels, (label, sorted(labels))
    for label in labels:  # no Scapy class names (PriMsg) nor field names (msg_id) as labels
        assert "_" not in label and not re.search(r"[a-z][A-Z]", label), (label, sorted(labels))
    assert tree.count("\n    Header\n") == len(every_type()), tree
    assert "\n    Private message\n" in tree and "\n        Entry\n" in tree, tree


def test_tshark_decodes_a_capture_made_by_sniff(tshark, dissector, direct):
    from scapy.utils import rdpcap

    packets = [decode(bytes(frame[UDP].payload)) for frame in rdpcap(str(direct.pcap))]
    check(tshark_fields(tshark, dissector, str(direct.pcap), sorted(kinds())), packets)
    done = subprocess.run(
        [tshark, "-X", f"lua_script:{dissector}", "-r", str(direct.pcap), "-o", "udp.try_heuristic_first:TRUE"],
        capture_output=True, text=True, timeout=120,
    )
    assert re.search(r"CHAT .* pri_msg #\d+ from Ann", done.stdout), done.stdout


# -- requests and answers, retransmissions, duplicate acks, conversations -------------------------------


def tshark_json(tshark: str, dissector: str, pcap: str) -> dict[int, dict]:
    """frame number -> the chat layer of ``tshark -2 -T json`` (two passes: a request learns its answer;
    the subtrees, all called _ws.lua.text, as a list rather than the last of them)."""
    done = subprocess.run([tshark, "-X", f"lua_script:{dissector}", "-r", pcap, "-2", "-o", "udp.try_heuristic_first:TRUE",
                           "-T", "json", "--no-duplicate-keys"], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0 and "Lua" not in done.stderr, done.stderr
    frames = {}
    for packet in json.loads(done.stdout):
        layers = packet["_source"]["layers"]
        frames[int(layers["frame"]["frame.number"])] = layers.get("chat", {})
    return frames


def flat(tree: dict) -> dict[str, str]:
    """Every chat.* field of a layer of ``tshark -T json``, from its subtrees too (the first of each)."""
    found = {}
    for key, value in tree.items():
        for sub in value if isinstance(value, list) else [value]:
            if isinstance(sub, dict):
                found = flat(sub) | found
            elif key.startswith("chat.") and key not in found:
                found[key] = sub
    return found


def experts(chat: dict) -> dict[str, str]:
    """The chat layer's expert infos: their field name -> their message."""
    found = chat.get("_ws.expert", [])
    found = found if isinstance(found, list) else [found]
    return {name: item["_ws.expert.message"] for item in found for name in item if name.startswith("chat.")}


def conversations(tshark: str, dissector: str, pcap: str) -> dict[str, dict[str, str]]:
    """``tshark -z chat,conv``: conversation -> column -> value."""
    done = subprocess.run([tshark, "-X", f"lua_script:{dissector}", "-r", pcap, "-q", "-o", "udp.try_heuristic_first:TRUE",
                           "-z", "chat,conv"], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0 and "Lua" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("ChatApp conversations")
    columns = lines[start + 1].split("\t")
    return {cells[0]: dict(zip(columns, cells)) for cells in (row.split("\t") for row in lines[start + 2:] if row)}


ANN, SRV, BOB = ("127.0.0.1", 41001), ("127.0.0.1", 46666), ("127.0.0.1", 41002)


@pytest.fixture(scope="module")
def exchanges_pcap(tmp_path_factory) -> str:
    """Ann's reg, sent again 0.5 s later, answered twice (the second answer a duplicate ack); two
    private messages to Bob answered by one ack (ack_id and also); a join_group never answered."""
    def frame(at, src, dst, pkt):
        made = Ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / Raw(bytes(pkt))
        made.time = 1_700_000_000 + at
        return made

    def head(kind, msg_id, sender, port):
        return ChatHeader(type=kind, msg_id=msg_id, sender=sender, port=port)

    frames = [
        frame(0.0, ANN, SRV, head("reg", 10, "Ann", ANN[1])),  # 1
        frame(0.5, ANN, SRV, head("reg", 10, "Ann", ANN[1])),  # 2: retransmission of 1
        frame(0.502, SRV, ANN, head("reg_ack", 90, "server", SRV[1]) / RegAck(ack_id=10)),  # 3: answers 2
        frame(0.503, SRV, ANN, head("reg_ack", 90, "server", SRV[1]) / RegAck(ack_id=10)),  # 4: duplicate ack
        frame(1.0, ANN, BOB, head("pri_msg", 11, "Ann", ANN[1]) / PriMsg(text="one")),  # 5
        frame(1.1, ANN, BOB, head("pri_msg", 12, "Ann", ANN[1]) / PriMsg(text="two")),  # 6
        frame(1.25, BOB, ANN, head("ack", 70, "Bob", BOB[1]) / Ack(ack_id=12, also=[MsgId(id=11)])),  # 7: answers 6 and 5
        frame(2.0, ANN, SRV, head("join_group", 13, "Ann", ANN[1]) / JoinGroup(group="g1")),  # 8: no answer
        frame(3.0, BOB, ANN, head("ack", 71, "Bob", BOB[1]) / Ack(ack_id=99)),  # 9: answers nothing seen
    ]
    pcap = str(tmp_path_factory.mktemp("exchanges") / "exchanges.pcap")
    wrpcap(pcap, frames)
    return pcap


def test_tshark_links_requests_and_answers_and_flags_retransmissions_and_duplicate_acks(tshark, dissector, exchanges_pcap):
    chat = tshark_json(tshark, dissector, exchanges_pcap)
    assert chat[1]["chat.response_in"] == "3" and chat[2]["chat.response_in"] == "3"  # both tries, as DNS does
    assert chat[2]["chat.retransmission_of"] == "1" and chat[2]["chat.retry"] == "1"
    assert experts(chat[2]) == {"chat.retransmission": "Retransmission 1 of the request in frame 1"}
    assert chat[3]["chat.response_to"] == "2" and float(chat[3]["chat.time"]) == pytest.approx(0.002, abs=1e-6)
    assert "chat.duplicate_of" not in chat[3] and experts(chat[3]) == {}
    assert chat[4]["chat.response_to"] == "2" and chat[4]["chat.duplicate_of"] == "3"
    assert experts(chat[4]) == {"chat.duplicate_ack": "Duplicate ack: the request in frame 2 was answered already in frame 3"}
    assert chat[5]["chat.response_in"] == "7" and chat[6]["chat.response_in"] == "7"
    assert chat[7]["chat.response_to"] == "6" and chat[7]["chat.also_response_to"] == "5"
    assert float(chat[7]["chat.time"]) == pytest.approx(0.15, abs=1e-6)
    assert "chat.response_in" not in chat[8] and experts(chat[8]) == {}
    assert "chat.response_to" not in chat[9] and experts(chat[9]) == {"chat.request_not_seen": "Answer to a request not in the capture"}
    for n in (1, 5, 6, 8):
        assert "chat.retransmission_of" not in chat[n] and "chat.response_to" not in chat[n]
    # The links are fields: display filters find the retransmissions and the duplicate acks.
    done = subprocess.run([tshark, "-X", f"lua_script:{dissector}", "-r", exchanges_pcap, "-o", "udp.try_heuristic_first:TRUE",
                           "-Y", "chat.retransmission_of or chat.duplicate_of", "-T", "fields", "-e", "frame.number",
                           "-e", "_ws.col.Info"], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.stdout.splitlines() == ["2\treg #10 from Ann [retransmission]", "4\treg_ack #90 from server [duplicate ack]"], done


def test_tshark_conversation_statistics_count_each_pair_of_endpoints(tshark, dissector, exchanges_pcap):
    table = conversations(tshark, dissector, exchanges_pcap)
    ann_srv, ann_bob = "127.0.0.1:41001 <-> 127.0.0.1:46666", "127.0.0.1:41001 <-> 127.0.0.1:41002"
    assert set(table) == {ann_srv, ann_bob}
    assert table[ann_srv] == {"Conversation": ann_srv, "Frames": "5", "Bytes": str(sum_bytes(exchanges_pcap, [1, 2, 3, 4, 8])),
                              "Requests": "3", "Answers": "2", "Retransmissions": "1", "Duplicate acks": "1",
                              "Unanswered": "1", "Mean RTT (ms)": "2.000"}
    assert table[ann_bob] | {"Bytes": ""} == {"Conversation": ann_bob, "Frames": "4", "Bytes": "", "Requests": "2",
                                               "Answers": "2", "Retransmissions": "0", "Duplicate acks": "0",
                                               "Unanswered": "0", "Mean RTT (ms)": "150.000"}


def answered(fields: dict[str, str]) -> str:
    """The message id an answer (ack or reg_ack) answers."""
    return fields.get("chat.ack.ack_id") or fields["chat.regack.ack_id"]


def sum_bytes(pcap: str, frames: list[int]) -> int:
    from scapy.utils import rdpcap

    packets = rdpcap(pcap)
    return sum(len(packets[n - 1]) for n in frames)


@needs_root
def test_tshark_flags_the_retransmission_and_duplicate_acks_the_real_proxy_caused(tshark, dissector, tmp_path):
    """The real proxy (a process) drops Ann's first private message and then sends her retry to Bob
    twice; real clients retry and answer.  On the sniffer's capture tshark links each ack to its
    request, flags Ann's retry as a retransmission and Bob's second ack as a duplicate ack."""
    pcap = tmp_path / "proxy.pcap"
    ports = {"server": quiet_port(), "Ann": quiet_port(), "Bob": quiet_port()}
    procs = Processes()
    proxy = None
    try:
        procs.server(ports["server"])
        proxy = ProxyProcess((HOST, ports["server"]), "--rule", "drop first=1 type=pri_msg",
                             "--rule", "duplicate 1 type=pri_msg")
        ports["proxy"] = proxy.address[1]
        sniff = procs.sniffer(pcap, list(ports.values()))
        ann = procs.client("Ann", ports["proxy"], ports["Ann"])
        procs.client("Bob", ports["proxy"], ports["Bob"])
        ann.wait_for(r"^\s*Bob\s")
        ann.type("send Bob hello")
        ann.wait_for(r"^>>> Message received by Bob\.")
        acks = sniff.wait_for(r"Bob → Ann +ack .*↩ pri_msg .*\(answered again, 2x\)")
        sniff.wait_for(r"Bob → Ann +ack .*↩ pri_msg .*\(answered again, 2x\)", after=acks + 1)  # on both hops
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
    finally:
        procs.stop_all()
        if proxy is not None:
            proxy.stop()
    chat = tshark_json(tshark, dissector, str(pcap))
    fields = {n: flat(c) for n, c in chat.items()}
    kinds_of = {n: MSG_TYPES[int(f["chat.type"])] for n, f in fields.items() if "chat.type" in f}
    # A loaded machine may retry more (a late ack): every flag must still be right, and these must be there.
    retransmissions = [n for n, c in chat.items() if "chat.retransmission" in experts(c)]
    assert "pri_msg" in {kinds_of[n] for n in retransmissions}, chat
    for n in retransmissions:
        first = int(chat[n]["chat.retransmission_of"])
        assert first < n and (kinds_of[first], fields[first]["chat.msg_id"]) == (kinds_of[n], fields[n]["chat.msg_id"])
    duplicates = [n for n, c in chat.items() if "chat.duplicate_ack" in experts(c)]
    assert len(duplicates) >= 2, chat  # Bob's second ack into the proxy, and out of it to Ann
    for n in duplicates:
        earlier = int(chat[n]["chat.duplicate_of"])
        assert earlier < n and kinds_of[earlier] == kinds_of[n] and answered(fields[earlier]) == answered(fields[n])
    assert "pri_msg" in {kinds_of[int(chat[n]["chat.response_to"])] for n in duplicates}
    table = conversations(tshark, dissector, str(pcap))
    assert sum(int(row["Duplicate acks"]) for row in table.values()) == len(duplicates)
    assert sum(int(row["Retransmissions"]) for row in table.values()) == len(retransmissions)
    assert sum(int(row["Frames"]) for row in table.values()) == len(kinds_of)
