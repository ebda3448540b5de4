#!/usr/bin/env python3
"""Resend the chat datagrams of a capture to one address, from one local socket,
and show what was sent and what came back, decoded.

Datagrams keep their original spacing (--speed 2: twice as fast; --fast: no
waiting).  Bytes are sent exactly as captured: the same message ids, names and
tokens, which is what a replay attack does.  Replies are matched to what they
answer, with the round-trip time, as in sniff.py.

examples:
  replay.py chat.pcap --to 127.0.0.1:6666
  replay.py chat.pcap --to 127.0.0.1:6666 --type reg --type pri_msg --fast
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make the checkout's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.cli import Parser, UserError, counted, dependencies, examples, host_port, open_capture, positive, prog, reader_may_leave  # noqa: E402  (after the path is set)

LOCAL_NAME = "replay"


def load(path: str, types: set[str]) -> list[tuple[int, bytes]]:
    """(capture time in µs, bytes) of each chat datagram in the capture, of the chosen types."""
    from proto import MSG_TYPES, ProtocolError, decode
    from tools.sniff import udp_datagram

    datagrams = []
    with open_capture(path) as reader:
        for frame in reader:
            found = udp_datagram(frame, set())
            if found is None:
                continue
            when, _, _, data = found
            if types:
                try:
                    kind = MSG_TYPES[decode(data).type]
                except ProtocolError:
                    kind = "malformed"
                if kind not in types:
                    continue
            datagrams.append((when, data))
    return datagrams


def replay(datagrams: list[tuple[int, bytes]], sock: socket.socket, speed: float | None, wait: float,
           show) -> tuple[int, int]:
    """Send on ``sock`` (connected to the target) with the capture's spacing divided by ``speed``
    (None: at once); ``show(direction, event)`` for each datagram sent and received.  Returns
    (sent, received); UserError if nothing listens at the target."""
    from tools.traffic import Tracker

    here, target = sock.getsockname()[:2], sock.getpeername()[:2]
    tracker = Tracker()
    tracker.pin(here, LOCAL_NAME)
    start = time.monotonic()
    first = datagrams[0][0]
    received = 0

    def now_us() -> int:
        return round((time.monotonic() - start) * 1_000_000)

    def receive_until(deadline: float) -> None:
        """Show what arrives until ``deadline``, and what has already arrived."""
        nonlocal received
        while select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            data = sock.recv(65535)
            received += 1
            show("recv", tracker.feed(now_us(), target, here, data))

    try:
        for when, data in datagrams:
            if speed is not None:
                receive_until(start + (when - first) / 1_000_000 / speed)
            receive_until(time.monotonic())
            sock.send(data)
            show("sent", tracker.feed(now_us(), here, target, data))
        receive_until(time.monotonic() + wait)
    except ConnectionRefusedError:  # the ICMP port unreachable a connected socket is told of
        raise UserError(f"nothing listens on {target[0]}:{target[1]} (port unreachable)") from None
    except OSError as exc:
        raise UserError(f"cannot send to {target[0]}:{target[1]}: {exc.strerror}") from None
    return len(datagrams), received


def build_parser() -> argparse.ArgumentParser:
    from proto import MSG_TYPES

    parser = Parser(prog=prog(), description=__doc__.split("\n\n")[0], epilog=examples(__doc__, "replay.py"),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture", metavar="FILE.pcap", help="a capture, e.g. from sniff.py -w or tcpdump")
    parser.add_argument("--to", type=host_port, required=True, metavar="HOST:PORT", help="where to send the datagrams")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", help="send as fast as possible")
    pace.add_argument("--speed", type=positive(float), default=1.0, metavar="X", help="X times the original pace (default 1)")
    parser.add_argument("--type", action="append", default=[], choices=[*MSG_TYPES.values(), "malformed"],
                        metavar="T", help="replay only this message type (repeatable)")
    parser.add_argument("--bind", type=host_port, default=("0.0.0.0", 0), metavar="HOST:PORT",
                        help="local address to send from (default: any, a free port)")
    parser.add_argument("--wait", type=float, default=1.0, metavar="S",
                        help="how long to listen for answers after the last datagram (default 1)")
    return parser


@dependencies()
@reader_may_leave
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from tools.traffic_views import line

    console = Console(highlight=False, soft_wrap=True)

    def show(direction: str, event) -> None:
        console.print(direction, line(event, replayed=direction == "sent"))

    try:
        datagrams = load(args.capture, set(args.type))
        if not datagrams:
            raise UserError(f"no chat datagrams{' of these types' if args.type else ''} in {args.capture}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(args.bind)
            except OSError as exc:
                raise UserError(f"cannot bind {args.bind[0]}:{args.bind[1]}: {exc.strerror}") from None
            # Connected: only the target's answers arrive, and an ICMP port unreachable from it is
            # reported (as ConnectionRefusedError), which an unconnected socket never hears of.
            try:
                sock.connect(args.to)
            except OSError as exc:
                raise UserError(f"cannot send to {args.to[0]}:{args.to[1]}: {exc.strerror}") from None
            try:
                sent, received = replay(datagrams, sock, None if args.fast else args.speed, args.wait, show)
            except KeyboardInterrupt:
                return 130
    except UserError as exc:
        print(f"{prog()}: {exc}", file=sys.stderr)
        return 1
    console.print(f"sent {counted(sent, 'datagram')} to {args.to[0]}:{args.to[1]}, received {received}", style="dim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
