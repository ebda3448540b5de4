"""proxy: datagrams/s forwarded by the lossy proxy, no rules and ten, vs a bare asyncio relay

The same closed loop goes through three relays in front of the bare echo server, each a process
of its own: the bare asyncio relay of tools/perf/relay.py (the baseline), the lossy proxy with no
rules, and the proxy with ten rules that every datagram is checked against and none takes (the
most a datagram costs to decide, then passed).  The traffic is chat private messages, so the proxy
decodes every one.  Rounds alternate between the three; each figure is a median over rounds, its
ratio against the relay's median of the same run.  A round trip is two forwarded datagrams."""

from __future__ import annotations

import sys

from proto.fastpath import encode

from .figures import Busy, Figure, median
from .processes import ROOT, Process
from .throughput import closed_loop

TARGET_SHARE = 0.5  # of the relay's rate, with and without rules (the target)

# None matches the benchmark's traffic, so each datagram is checked against all ten; together
# they use every kind of key, the chat ones and those for any datagram.
TEN_RULES = [
    "drop type=kick",
    "delay 300ms type=grp_msg from=nobody",
    "duplicate 1 from=ghost",
    "drop to=ghost p=0.5",
    "corrupt type=table",
    "drop port=9",
    "drop size=>60000",
    "drop bytes=0:deadbeef",
    "drop src=127.0.0.2",
    "drop field.sender=nobody",
]
SUBJECTS = ("relay", "proxy, no rules", "proxy, 10 rules")


def relay_argv(server):
    return lambda port: [sys.executable, "-m", "tools.perf.relay", "--port", str(port), "--server", f"{server[0]}:{server[1]}"]


def proxy_argv(server, rules: list[str]):
    script = str(ROOT / "tools" / "lossy_proxy.py")
    words = [word for rule in rules for word in ("--rule", rule)]
    return lambda port: [sys.executable, script, "--listen", f"127.0.0.1:{port}", "--server", f"{server[0]}:{server[1]}", *words]


def add_arguments(parser) -> None:
    parser.add_argument("--clients", type=int, default=16, help="sockets, each with one datagram in flight (default 16)")
    parser.add_argument("--duration", type=float, default=2.0, metavar="S", help="seconds per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three relays; medians (default 3)")


def run(args, progress) -> list[Figure]:
    import socket

    warmup = min(0.3, args.duration / 4)
    socks = []
    for i in range(args.clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    supplies = [[encode("pri_msg", {"msg_id": n + 1, "port": s.getsockname()[1], "sender": f"b{i}"}, {"text": "Hi; see you at 12:30?"})
                 for n in range(200)] for i, s in enumerate(socks)]
    rates: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    cpu: dict[str, list[float]] = {name: [] for name in SUBJECTS}  # each one's CPU µs per datagram forwarded
    try:
        # the echo server floats; each relay in turn gets a core of its own, the load the others
        with Process(lambda port: [sys.executable, "-m", "tools.perf.echo", "--port", str(port)], "ready", apart=False) as echo:
            argvs = {"relay": relay_argv(echo.address), "proxy, no rules": proxy_argv(echo.address, []),
                     "proxy, 10 rules": proxy_argv(echo.address, TEN_RULES)}
            ready = {"relay": "ready", "proxy, no rules": "lossy proxy on", "proxy, 10 rules": "lossy proxy on"}
            steps = args.rounds * len(SUBJECTS)
            for round_ in range(args.rounds):
                for k, name in enumerate(SUBJECTS):
                    progress(f"proxy: {name}", (round_ * len(SUBJECTS) + k) / steps)
                    with Process(argvs[name], ready[name]) as relay:
                        busy = Busy(relay)
                        kept = closed_loop(socks, supplies, lambda i: supplies[i], relay.address, warmup, args.duration)
                        share = busy.share()[0]
                    rates[name].append(2 * len(kept) / args.duration)
                    cpu[name].append(share * 1e6 / max(rates[name][-1], 1))  # its CPU µs per datagram forwarded
                    _drain(socks)
    finally:
        for sock in socks:
            sock.close()
    base = median(rates["relay"])
    figures = [Figure("proxy", "bare asyncio relay", base, "datagrams/s", note=f"relay: {median(cpu['relay']):.1f} CPU µs a datagram",
                      also={"runs": rates["relay"], "cpu_us": median(cpu["relay"])})]
    for name in SUBJECTS[1:]:
        value = median(rates[name])
        figures.append(Figure("proxy", f"forwarded, {name[len('proxy, '):]}", value, "datagrams/s", base, "relay",
                              f">= {TARGET_SHARE:.0%} of relay", bool(base) and value / base >= TARGET_SHARE,
                              note=f"proxy: {median(cpu[name]):.1f} CPU µs a datagram",
                              also={"runs": rates[name], "relay_runs": rates["relay"], "cpu_us": median(cpu[name])}))
    progress("proxy", 1.0)
    return figures


def _drain(socks) -> None:
    """Answers still on their way from the last round are not counted in the next."""
    for sock in socks:
        while True:
            try:
                sock.recv(65536)
            except BlockingIOError:
                break
