"""The Lua dissector that sniff.py generates from the Scapy layer: tshark loads it
and decodes every field of every captured chat datagram to the layer's values."""

from __future__ import annotations

import os
import re
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
from tests.captures import SNIFF, run_tool

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
    assert sorted(abbrevs) == sorted(kinds())
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
