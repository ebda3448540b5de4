#!/usr/bin/env python3
"""Live protocol inspector for ChatApp: one line per chat datagram, with names,
ack matching, round-trip times, retransmissions and unanswered requests.

Chat datagrams are recognised by the layer's magic and version on any UDP port,
over IPv4 or IPv6.  Live capture (root) uses a Linux packet socket (libpcap only
compiles a -f filter); on a loopback interface each datagram passes twice
(outgoing and incoming) and is shown once.

examples:
  sniff.py                              watch lo until Ctrl+C
  sniff.py -w chat.pcap --stats         save a capture, print statistics at the end
  sniff.py -r chat.pcap --type pri_msg --type ack
  sniff.py -f "host 127.0.0.1 and port 6666"   only the server's traffic (tcpdump's filter syntax)
  sniff.py -f "ip6 and udp" --ladder           chat over IPv6 (::1), the ladder drawn as it comes
  sniff.py -r chat.pcap --ladder --svg ladder.svg --proxy-log proxy.jsonl
  sniff.py --json --count 20 | jq .type
  sniff.py --wireshark-dissector > chat.lua && tshark -X lua_script:chat.lua -r chat.pcap

filters: -f and --port limit what is captured (and written with -w); --type and --name
only choose what is shown: acks are still matched to requests that are not shown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make the checkout's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.cli import (  # noqa: E402  (after the path is set)
    Parser, UserError, dependencies, examples, open_capture, port, positive, prog, reader_may_leave, stdout_gone,
)

ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772  # link types of an interface, in a packet socket's address
PACKET_OUTGOING = 4  # packet type of a datagram this host sends, in a packet socket's address
SO_RCVBUFFORCE = 33  # root may raise the receive buffer past net.core.rmem_max
CAPTURE_BUFFER = 4 << 20  # bursts must not overflow the socket while a line is printed


# -- from captured frames to datagrams ------------------------------------------------------


def udp_datagram(frame, ports: set[int]):
    """(time in µs, source, destination, payload) of a chat datagram in an IPv4 or IPv6 UDP frame, else None."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    from proto import is_chat, version_of

    ip = frame.getlayer(IP) or frame.getlayer(IPv6)
    udp = ip.payload if ip is not None else None
    if type(udp) is not UDP:  # also skips the UDP header quoted inside an ICMP error
        return None
    if ports and udp.sport not in ports and udp.dport not in ports:
        return None
    data = bytes(udp.payload)
    if udp.len:
        data = data[: udp.len - 8]  # Ethernet padding is not part of the datagram
    if not is_chat(data) and version_of(data) is None:  # other versions are shown too, labelled
        return None
    return round(frame.time * 1_000_000), (ip.src, udp.sport), (ip.dst, udp.dport), data


def capture_filter(text: str | None, ports: list[int], linktype: int):
    """``-f TEXT`` (and the ``--port``s) compiled for ``linktype``, or None without ``-f``."""
    from tools.bpf import Expression, FilterError

    if text is None:
        return None
    if ports:
        text = f"({text}) and udp and ({' or '.join(f'port {p}' for p in ports)})"
    try:
        return Expression(text, linktype)
    except FilterError as exc:
        raise UserError(str(exc)) from None


def open_live_socket(iface: str, ports: list[int] | None = None, expression: str | None = None):
    """A packet socket on ``iface`` that drops the outgoing copy of each loopback datagram; with
    ``ports`` or a capture filter ``expression`` (``-f``), only the datagrams they let through
    reach it (a filter in the kernel)."""
    from scapy.arch.linux import L2ListenSocket, get_last_packet_timestamp
    from scapy.data import ARPHRD_TO_DLT
    from scapy.interfaces import resolve_iface

    from tools.bpf import DLT_EN10MB, attach, attach_udp_ports

    class OncePerDatagram(L2ListenSocket):
        # By packet type, never by comparing bytes and times: retransmissions are
        # byte-identical copies and must stay visible.
        def recv_raw(self, x=65535):
            data, sa_ll, ts = self._recv_raw(self.ins, x)
            if sa_ll[2] == PACKET_OUTGOING and sa_ll[3] == ARPHRD_LOOPBACK:
                return None, None, None
            return self.LL, data, ts if ts is not None else get_last_packet_timestamp(self.ins)

    try:
        socket.if_nametoindex(iface)
    except OSError:
        raise UserError(f"no such interface '{iface}'") from None
    ports = ports or []
    # Compiled before the socket opens: a bad filter is the user's mistake, whoever runs it.
    hardware = resolve_iface(iface).type
    ethernet = hardware in (ARPHRD_ETHER, ARPHRD_LOOPBACK)  # lo has Ethernet framing in a packet socket
    linktype = DLT_EN10MB if ethernet else ARPHRD_TO_DLT.get(hardware, DLT_EN10MB)
    expr = capture_filter(expression, ports, linktype)
    try:
        sock = OncePerDatagram(iface=iface)
    except PermissionError:
        raise UserError(
            "live capture needs root (a raw packet socket): run it with sudo, or read a capture with -r FILE"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot capture on '{iface}': {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):
        sock.ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
    if expr is not None:
        try:
            attach(sock.ins, expr.program())
        except OSError as exc:
            sock.close()
            raise UserError(f"the kernel refused the capture filter: {exc.strerror or exc}") from None
    elif 1 <= len(ports) <= 100 and ethernet:
        # Best effort: without it the same datagrams are picked out in Python, only more slowly.
        with contextlib.suppress(OSError):
            attach_udp_ports(sock.ins, ports)
    return sock


# -- what to do with each datagram -----------------------------------------------------------


class Inspector:
    """Feeds datagrams to the tracker and prints, writes and remembers what the options ask for."""

    def __init__(self, args: argparse.Namespace, console):
        from tools.traffic import Tracker

        self.args = args
        self.console = console
        self.tracker = Tracker()
        self.ports = set(args.port)
        self.types = set(args.type)
        self.names = set(args.name)
        self.shown: list = []  # events drawn by the ladder
        self.count = 0
        self.done = False
        self.writer = None
        self.written = False
        self.stop_at: int | None = None  # -r with --timeout: the capture time to stop at
        self.end: int | None = None  # when the capture ended (µs): its last datagram, or when it was stopped
        if args.write:
            from scapy.utils import PcapWriter

            try:
                self.writer = PcapWriter(args.write, sync=True)
            except OSError as exc:
                raise UserError(f"cannot write {args.write}: {exc.strerror}") from None
        # --ladder while capturing: drawn as the datagrams come, not only at the end.  Last: it takes
        # over a terminal until stopped.
        self.live = LiveLadder(self.tracker, console) if args.ladder and not args.read else None

    def frame(self, frame) -> None:
        datagram = udp_datagram(frame, self.ports)
        if datagram is None or self.done:
            return
        time_us = datagram[0]
        if self.args.read and self.args.timeout and self.stop_at is None:
            self.stop_at = time_us + round(self.args.timeout * 1_000_000)
        if self.stop_at is not None and time_us > self.stop_at:
            self.done = True
            self.end = self.stop_at
            return
        self.end = time_us
        event = self.tracker.feed(*datagram)
        if self.writer is not None:
            if not self.written:
                self.writer.write_header(frame)  # the link type of the first frame
                self.written = True
            # The capture time as shown, to the microsecond: -r of this file prints the same times.
            sec, usec = divmod(time_us, 1_000_000)
            self.writer.write_packet(frame, sec=sec, usec=usec)
        if not self.wanted(event):
            return
        self.count += 1
        self.show(event)
        if self.args.count and self.count >= self.args.count:
            self.done = True
        if stdout_gone() and self.writer is None and not self.args.svg:
            self.done = True  # nothing more would come of it

    def wanted(self, event) -> bool:
        if self.types and event.kind not in self.types:
            return False
        return not self.names or not self.names.isdisjoint((event.src_name, event.dst_name, event.claimed))

    def show(self, event) -> None:
        from node.text import json_line
        from tools.traffic_views import line, record

        if self.args.ladder or self.args.svg:
            self.shown.append(event)
        if self.live is not None:
            self.live.add(event)
        if self.args.json:
            self.console.file.write(json_line(record(event)) + "\n")
            self.console.file.flush()
        elif not self.args.ladder:
            self.console.print(line(event))
            if self.args.hexdump:
                from scapy.utils import hexdump

                self.console.print(hexdump(event.data, dump=True), style="dim", markup=False)
            self.console.file.flush()

    def finish(self) -> None:
        from node.text import json_line
        from tools import traffic_views as views

        if self.writer is not None:
            self.writer.close()
        if self.live is not None:
            self.live.stop()
        if self.args.ladder or self.args.svg:
            self.draw_ladder()
        unanswered, waiting = ([ex for ex in found if self.wanted(ex.tries[0])]
                               for found in self.tracker.without_answer(self.end))
        if self.args.json:
            for exchanges, cut_off in ((unanswered, False), (waiting, True)):
                for exchange in exchanges:
                    print(json_line(views.unanswered_record(self.tracker, exchange, cut_off)))
            if self.args.stats:
                print(json_line({"stats": views.stats_record(self.tracker.stats(self.end))}))
            return
        for exchanges, cut_off in ((unanswered, False), (waiting, True)):
            if exchanges:
                self.console.print()
                for text in views.unanswered_lines(self.tracker, exchanges, cut_off):
                    self.console.print(text)
        if self.args.stats:
            print_stats(self.console, self.tracker.stats(self.end))

    def draw_ladder(self) -> None:
        from tools.traffic import apply_proxy_log
        from tools.traffic_views import ladder

        extra = apply_proxy_log(self.tracker, self.shown, read_proxy_log(self.args.proxy_log)) if self.args.proxy_log else []
        rows = ladder(self.tracker, self.shown + extra)
        if self.live is not None and self.live.stream is not None:
            self.console.print(self.live.stream.legend())  # its rows are printed already
        elif self.args.ladder:
            for row in rows:
                self.console.print(row)
        if self.args.svg:
            save_svg(rows, self.args.svg, self.args.read or f"live capture on {self.args.iface}")


class LiveLadder:
    """The ladder of a live capture as the datagrams come.  On a terminal, rich's Live redraws the
    latest arrows that fit the screen, and the whole ladder is printed when the capture ends; on
    anything else (a pipe, a file), which cannot be redrawn, each arrow is printed as a row when
    its datagram is captured (traffic_views.LadderStream), and the legend at the end."""

    def __init__(self, tracker, console):
        from tools.traffic_views import LadderStream

        self.tracker = tracker
        self.console = console
        self.events: list = []
        self.stream = None if console.is_terminal else LadderStream(tracker)
        self.screen = None
        if self.stream is None:
            from rich.live import Live

            # Drawn by Live's own thread a few times a second (__rich__ below), not once per datagram.
            self.screen = Live(self, console=console, refresh_per_second=8, transient=True)
            self.screen.start()

    def add(self, event) -> None:
        self.events.append(event)
        if self.stream is not None:
            for row in self.stream.add(event):
                self.console.print(row)
            self.console.file.flush()

    def __rich__(self):
        from rich.console import Group

        from tools.traffic_views import ladder

        room = max(self.console.size.height - 4, 1)  # the names, a blank row and the legend
        return Group(*ladder(self.tracker, self.events[-room:], settled=False))

    def stop(self) -> None:
        if self.screen is not None:
            self.screen.stop()
            self.screen = None


def read_proxy_log(path: str) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                if text.strip():
                    try:
                        row = json.loads(text)
                        if "phase" in row:
                            continue  # a scenario's phase change (tools/scenario.py), not a datagram
                        rows.append({k: row[k] for k in ("time", "from", "to", "type", "id", "action")})
                    except (ValueError, KeyError, TypeError):
                        raise UserError(f"{path}:{number}: not a line of the lossy proxy's --log") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return rows


# Fonts the reader's machine has, offline: rich's own template loads Fira Code from a CDN.  Every
# character is placed by its column (rich sets x and textLength), so any monospace font lines up.
SVG_FONTS = '"DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace'
SVG_TITLE_FONTS = '"DejaVu Sans", "Liberation Sans", Arial, sans-serif'
# A cell's width over the font size: DejaVu Sans Mono's advance (1233/2048 em; Liberation Mono's is
# 1229/2048).  librsvg places glyphs by the font's advance, not by textLength, so the cells must match it.
SVG_CELL = 1233 / 2048


def offline_svg_format() -> str:
    """rich's SVG template without its web fonts (no @font-face, no URL to load), with SVG_FONTS,
    its spaces kept."""
    import inspect
    import re

    from rich.console import Console

    template = inspect.signature(Console.export_svg).parameters["code_format"].default
    template = re.sub(r"\s*@font-face \{\{.*?\}\}", "", template, flags=re.S)
    template = re.sub(r"(-matrix \{\{\s*font-family:)[^;]*;", rf"\1 {SVG_FONTS};", template)
    template = re.sub(r"(-title \{\{(?:\s*[a-z-]+:[^;]*;)*?\s*font-family:)[^;]*;", rf"\1 {SVG_TITLE_FONTS};", template)
    # Keep every space: the cells are runs of spaces, and librsvg collapses them otherwise.
    template = template.replace("<svg ", '<svg xml:space="preserve" ', 1)
    return template


def save_svg(rows, path: str, source: str) -> None:
    """The ladder as SVG: one file, or for a long capture pages of PAGE_ARROWS arrows each, ``path``
    then ``NAME-2.svg``... beside it (said on stderr)."""
    from tools.traffic_views import ladder_pages

    pages = ladder_pages(rows)
    target = Path(path)
    paths = [target] + [target.with_name(f"{target.stem}-{n}{target.suffix}") for n in range(2, len(pages) + 1)]
    width = max((row.cell_len for row in rows), default=40) + 2  # the same on every page
    for n, (page, page_path) in enumerate(zip(pages, paths), 1):
        title = f"chat ladder: {source}" + (f", page {n} of {len(pages)}" if len(pages) > 1 else "")
        _write_svg(page, page_path, title, width)
    if len(pages) > 1:
        print(f"{prog()}: the ladder has {len(pages)} pages: {', '.join(map(str, paths))}", file=sys.stderr)


def _write_svg(rows, path: Path, title: str, width: int) -> None:
    import io

    from rich.console import Console

    # A height too: with only a width, rich falls back to 80 columns when TERM is dumb.
    console = Console(record=True, file=io.StringIO(), width=width, height=len(rows) + 1, force_terminal=True,
                      color_system="truecolor")
    for row in rows:
        console.print(row, soft_wrap=True)
    try:
        svg = console.export_svg(title=title, code_format=offline_svg_format(), font_aspect_ratio=SVG_CELL)
        path.write_text(svg, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def print_stats(console, stats) -> None:
    from rich import box

    from node.grids import rich_grid
    from tools.traffic_views import ms

    console.print()
    style = {"box": box.SIMPLE_HEAD, "title_justify": "left"}
    console.print(rich_grid(("type", "packets"), stats.per_type.items(), ("packets",), title="packets per type", **style))
    nodes = ((name, sent, received) for name, (sent, received) in stats.per_node.items())
    console.print(rich_grid(("node", "sent", "received"), nodes, ("sent", "received"), title="packets per node", **style))
    if stats.false_claims:
        claims = ((node, name, n) for node, names in stats.false_claims.items() for name, n in names.items())
        console.print(rich_grid(("node", "claimed the name of", "datagrams"), claims, ("datagrams",),
                                title="false claims: sender names that another address holds", **style))
    rtt = "no answers seen"
    if stats.rtt_median is not None:
        rtt = f"median {ms(stats.rtt_median)}, p99 {ms(stats.rtt_p99)} ({stats.rtt_samples} answered)"
    waiting = f", {stats.waiting} waiting when the capture ended" if stats.waiting else ""
    console.print(f"packets {stats.packets}, retransmissions {stats.retransmissions}, "
                  f"unanswered {stats.unanswered}{waiting}, rtt {rtt}")


# -- sources -------------------------------------------------------------------------------------


def read_capture(path: str, inspector: Inspector, expression: str | None = None) -> None:
    from tools.bpf import DLT_EN10MB

    expr = None
    with open_capture(path) as reader:
        for frame in reader:
            if expression is not None:
                if expr is None:  # a pcapng file says its link type with its first frame
                    interfaces = getattr(reader, "interfaces", None)
                    linktype = getattr(reader, "linktype", None) or (interfaces[0][0] if interfaces else DLT_EN10MB)
                    expr = capture_filter(expression, [], linktype)
                if not expr.matches(bytes(frame)):
                    continue
            inspector.frame(frame)
            if inspector.done:
                break


def capture_live(args: argparse.Namespace, inspector: Inspector) -> None:
    from scapy.layers import inet  # noqa: F401  (IPv4 and UDP dissection)
    from scapy.sendrecv import AsyncSniffer

    sock = open_live_socket(args.iface, sorted(set(args.port)), args.filter)
    failure: list[BaseException] = []

    def each(frame) -> None:
        try:
            inspector.frame(frame)
        except Exception as exc:  # raised again in the main thread, where it can be reported
            failure.append(exc)
            inspector.done = True

    def started() -> None:
        print(f"{prog()}: capturing on {args.iface} (Ctrl+C to stop)", file=sys.stderr, flush=True)

    sniffer = AsyncSniffer(
        opened_socket=sock, prn=each, store=False, started_callback=started, stop_filter=lambda _: inspector.done
    )
    deadline = time.monotonic() + args.timeout if args.timeout else None
    sniffer.start()
    try:
        while sniffer.thread.is_alive() and (deadline is None or time.monotonic() < deadline):
            sniffer.thread.join(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        if sniffer.running:
            sniffer.stop()
        sock.close()
        inspector.end = round(time.time() * 1_000_000)  # the capture ran until now (capture times are wall clock)
    if failure:
        raise failure[0]


# -- command line -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from proto import MSG_TYPES

    types = [*MSG_TYPES.values(), "malformed", "other_version"]
    parser = Parser(prog=prog(), description=__doc__.split("\n\n")[0],
                     epilog=examples(__doc__, "sniff.py"), formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-i", dest="iface", default="lo", metavar="IFACE", help="capture live on IFACE (default lo; needs root)")
    source.add_argument("-r", dest="read", metavar="FILE.pcap", help="read a capture (pcap or pcapng, e.g. from -w or tcpdump)")
    parser.add_argument("-w", dest="write", metavar="FILE.pcap", help="also write the chat datagrams to a pcap file")
    parser.add_argument("-f", dest="filter", metavar="FILTER",
                        help='capture filter, as in tcpdump and tshark (pcap-filter(7); e.g. "host 127.0.0.1 and port 6666", "ip6")')
    parser.add_argument("--type", action="append", default=[], choices=types, metavar="T", help="show only this message type (repeatable)")
    parser.add_argument("--name", action="append", default=[], metavar="N", help="show only datagrams from or to this node (repeatable)")
    parser.add_argument("--port", action="append", default=[], type=port, metavar="P", help="capture only datagrams from or to this UDP port (repeatable)")
    parser.add_argument("--count", type=positive(int), metavar="N", help="stop after N datagrams shown")
    parser.add_argument("--timeout", type=positive(float), metavar="S", help="stop after S seconds (of capture time with -r)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per datagram, with every decoded field")
    output.add_argument("--ladder", action="store_true", help="draw a ladder diagram (as the datagrams come, while capturing)")
    parser.add_argument("--svg", metavar="FILE", help="save the ladder diagram as an SVG image")
    parser.add_argument("--proxy-log", metavar="FILE", help="the lossy proxy's --log: draw its drops as arrows ending in a cross")
    parser.add_argument("--stats", action="store_true", help="at the end: packets per type and node, retransmissions, RTTs")
    parser.add_argument("--hexdump", action="store_true", help="a hex dump under each line")
    parser.add_argument("--wireshark-dissector", action="store_true", help="print a Lua dissector for Wireshark/tshark and exit")
    return parser


@dependencies()
@reader_may_leave
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.wireshark_dissector:
        from tools.wireshark import lua_dissector

        sys.stdout.write(lua_dissector())
        return 0
    if args.proxy_log and not (args.ladder or args.svg):
        parser.error("--proxy-log draws on the ladder: add --ladder or --svg")
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        inspector = Inspector(args, console)
        try:
            if args.read:
                read_capture(args.read, inspector, args.filter)
            else:
                capture_live(args, inspector)
        except KeyboardInterrupt:
            pass  # Ctrl+C while reading a file: report what was read
        except BaseException:
            if inspector.live is not None:
                inspector.live.stop()  # gives the terminal back before the error is shown
            raise
        inspector.finish()
    except UserError as exc:
        print(f"{prog()}: {exc}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
