"""codec: µs per build and per dissect of each type: Scapy vs proto.fastpath vs plain struct

Three ways to the same bytes: the Scapy layer, proto.fastpath (what the nodes
use), and the floor, one ``struct`` call with every length known in advance.

Sample values are generated from each layer's own field list, so a field added to
the layer is measured without touching this file."""

from __future__ import annotations

import socket
import struct
import timeit

from proto import MSG_TYPES, PAYLOADS, ChatHeader
from proto.fastpath import encode, parse
from proto.fields import Kind, layer_spec

from .figures import Figure, check, median

HEADER = {"msg_id": 42, "port": 7771, "token": 0x1122334455667788, "sender": "Ann"}
TEXT = "Hi; see you at 12:30?"  # a typical short chat line
LIST_ITEMS = 3
TARGET_PRI_MSG = "< 25"  # µs, build + dissect of a private message (the target)


def sample_values(layer) -> dict:
    """Plausible values for the user fields of ``layer`` (lengths and counts are computed)."""
    values = {}
    for field in layer_spec(layer).fields:
        if field.computed:
            continue
        if field.kind is Kind.TEXT:
            values[field.name] = TEXT if field.name == "text" else "Ann"
        elif field.kind is Kind.LIST:
            values[field.name] = [sample_values(field.item.cls) for _ in range(LIST_ITEMS)]
        elif field.kind is Kind.IP:
            values[field.name] = "127.0.0.1"
        elif field.kind is Kind.INT:
            values[field.name] = 7
    return values


def scapy_packet(type_name: str, values: dict):
    header = ChatHeader(type=type_name, **HEADER)
    layer = PAYLOADS.get(type_name)
    return header if layer is None else header / layer_spec(layer).build(values)


def struct_equivalent(pkt) -> tuple[struct.Struct, tuple]:
    """One Struct and its arguments that pack to the same bytes as the dissected ``pkt``."""
    fmt, args = ["!"], []

    def walk(layer) -> None:
        for field in layer_spec(type(layer)).fields:
            value = layer.getfieldval(field.name)
            if field.kind is Kind.TEXT:
                data = value.encode("utf-8")
                fmt.append(f"{len(data)}s")
                args.append(data)
            elif field.kind is Kind.LIST:
                for item in value:
                    walk(item)
            elif field.kind is Kind.IP:
                fmt.append("4s")
                args.append(socket.inet_aton(value))
            else:
                fmt.append(field.code)
                args.append(value)

    layer = pkt
    while layer:
        walk(layer)
        layer = layer.payload
    return struct.Struct("".join(fmt)), tuple(args)


def per_call(fn, budget: float, repeat: int) -> float:
    """Median microseconds per call of ``fn`` over ``repeat`` runs of about ``budget`` seconds each."""
    number = 1
    while (elapsed := timeit.timeit(fn, number=number)) < budget / 4:
        number *= 4
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    return median(t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=repeat))


def add_arguments(parser) -> None:
    parser.add_argument("--types", nargs="+", metavar="TYPE", choices=sorted(MSG_TYPES.values()), help="message types to measure (default: all)")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per measurement; the median is reported (default 5)")
    parser.add_argument("--budget", type=float, default=0.02, metavar="S", help="seconds per timing run (default 0.02)")


def run(args, progress) -> list[Figure]:
    types = args.types or list(MSG_TYPES.values())
    figures = []
    for done, type_name in enumerate(types):
        progress(f"codec {type_name}", done / len(types))
        layer = PAYLOADS.get(type_name)
        values = sample_values(layer) if layer else {}
        data = bytes(scapy_packet(type_name, values))
        layout, struct_args = struct_equivalent(ChatHeader(data))
        fast_header = {**HEADER}
        if encode(type_name, fast_header, values) != data or layout.pack(*struct_args) != data:
            raise AssertionError(f"{type_name}: the three codecs disagree on the bytes")
        time = lambda fn: per_call(fn, args.budget, args.repeat)  # noqa: E731
        build = {
            "scapy": time(lambda: bytes(scapy_packet(type_name, values))),
            "fastpath": time(lambda: encode(type_name, fast_header, values)),
            "struct": time(lambda: layout.pack(*struct_args)),
        }
        dissect = {
            "scapy": time(lambda: ChatHeader(data)),
            "fastpath": time(lambda: parse(data)),
            "struct": time(lambda: layout.unpack(data)),
        }
        for what, t in (("build", build), ("dissect", dissect)):
            figures.append(
                Figure("codec", f"{what} {type_name} ({len(data)} B), fastpath", t["fastpath"], "µs", t["struct"], "struct",
                       note=f"Scapy {t['scapy']:.1f} µs", also={"scapy": t["scapy"]})
            )
        if type_name == "pri_msg":
            total = build["fastpath"] + dissect["fastpath"]
            scapy_total = build["scapy"] + dissect["scapy"]
            figures.append(
                Figure("codec", "pri_msg build + dissect, fastpath", total, "µs", build["struct"] + dissect["struct"], "struct",
                       TARGET_PRI_MSG, check(total, TARGET_PRI_MSG), note=f"Scapy {scapy_total:.1f} µs", also={"scapy": scapy_total})
            )
    progress("codec", 1.0)
    return figures
