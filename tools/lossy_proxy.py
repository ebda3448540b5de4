#!/usr/bin/env python3
"""A fault-injecting UDP proxy for ChatApp: drops, delays, duplicates, reorders, holds,
corrupts and replays chat datagrams chosen by what they mean, at the times a scenario says.

Clients are started with the proxy's --listen address as the server's.  The
proxy gives every real endpoint it sees a *mirror* socket of its own; a
datagram from endpoint Y arriving on the mirror of X is sent to X's real
address from Y's mirror.  The server therefore observes each client at its
mirror, the table it broadcasts points at mirrors, and private messages
between clients pass through the proxy too.  No node needs a special mode.

The rules, their grammar and what each action does: tools/faults.py (shown by --help);
scenarios, rules scheduled in time: tools/scenario.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Iterable

if not __package__:  # run as a script: make the checkout's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.cli import Parser, UserError, counted, dependencies, host_port, positive, prog, reader_may_leave  # noqa: E402  (after the path is set)

with dependencies():
    from tools import faults, layers
    from node.grids import rich_grid
    from node.text import escaped
    from tools.datagram_match import Datagram
    from tools.faults import ACTIONS, Decision, FaultPlan, ReorderHold, Rule, RuleError
    from tools import mirror_map
    from tools import scenario as scenarios

Address = tuple[str, int]
NON_CHAT = "non_chat"  # the counter of datagrams the layer did not decode
REFUSED = "refused"  # the counter of datagrams from new endpoints with no room for their mirror
MAX_ENDPOINTS = 4096  # mirrors (sockets) at most; --max-endpoints
READ_BATCH = 64  # datagrams read from one socket before the loop does anything else
MAP_DELAY = 0.02  # seconds from a change of the mirrors to its write to --map FILE


# -- the proxy: sockets and timers around a FaultPlan ------------------------------------


class _Mirror:
    """The proxy's socket that stands for one real endpoint."""

    def __init__(self, real: Address, sock: socket.socket):
        self.real = real
        self.sock = sock

    @property
    def address(self) -> Address:
        return self.sock.getsockname()[:2]


class LossyProxy:
    def __init__(
        self,
        server: Address,
        listen: Address = ("127.0.0.1", 0),
        rules: Iterable[str | Rule] = (),
        seed: int | None = None,
        log_path: str | None = None,
        max_hold: float = 1.0,
        layer=None,
        map_path: str | None = None,
        max_endpoints: int = MAX_ENDPOINTS,
    ):
        self.server = server
        self.max_endpoints = max_endpoints  # mirrors at most: a socket each, so a bound on open files
        self.layer = layer or layers.ChatLayer()  # what decodes each datagram: tools/layers.py
        self.listen = listen
        self.plan = FaultPlan(rules, seed)
        self.holds = ReorderHold(max_hold)
        # forwarded; non_chat (datagrams the layer did not decode) and, if a rule acted on them,
        # non_chat_ACTION; one per action taken on the decoded ones
        self.counters: Counter[str] = Counter()
        self._other = {action: NON_CHAT + action for action in ACTIONS}
        from proto import SERVER_NAME

        self.names: dict[Address, str] = {server: SERVER_NAME}
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None
        self._mirrors: dict[Address, _Mirror] = {}  # real endpoint -> its mirror
        self._loop: asyncio.AbstractEventLoop | None = None
        self._map_path = map_path  # --map: the mirror ports, kept across restarts
        self._map_failed = False
        self._map_due = False  # a write of the map is scheduled
        self._phases: deque[tuple[float, scenarios.Phase]] = deque()  # a scenario's, not announced yet, by time

    # control, also from tests (call on the proxy's loop, or through tests/procs.py's ProxyThread)
    def add_rule(self, rule: str | Rule) -> None:
        self.plan.add(rule)
        self.rules_changed()

    def replace_rules(self, rules: Iterable[str | Rule]) -> None:
        self.plan.replace(rules)
        self.rules_changed()

    def rules_changed(self) -> None:
        """New rules' during= windows count from now (rules given before start: from the start)."""
        if self._loop is not None:
            self.plan.activate(self._loop.time())

    def play(self, scenario: "scenarios.Scenario") -> None:
        """Add the scenario's rules, its times counted from now, and announce each phase as it begins."""
        for rule in scenario.rules():
            self.plan.add(rule)
        start = self._loop.time()  # one start for the rules' windows and the phases' timers
        self.plan.activate(start)
        for phase in scenario.phases():
            self._phases.append((start + phase.at, phase))
            self._loop.call_at(start + phase.at, self._announce_due, start + phase.at)

    def _announce_due(self, now: float) -> None:
        """Announce the phases that have begun by ``now``.  The timers do, and so does each datagram
        before its fate is decided: its I/O can run in the same turn of the loop as the timer, or
        before it, and a row decided under a phase must come after that phase's row in the log."""
        while self._phases and self._phases[0][0] <= now:
            self._announce(self._phases.popleft()[1])

    def _announce(self, phase: "scenarios.Phase") -> None:
        print(f"lossy proxy: scenario {phase.describe()}", file=sys.stderr, flush=True)
        if self._log is not None:
            rules = [{"line": step.line, "rule": step.rule} for step in phase.steps]
            self._log.write(json.dumps({"time": round(time.time(), 6), "phase": phase.at, "rules": rules}) + "\n")
            self._log.flush()

    def clear_rules(self) -> None:
        self.plan.replace([])

    @property
    def address(self) -> Address:
        return self._mirrors[self.server].address

    def start(self) -> list[str]:
        """Open the listening socket (the server's mirror), and with a map the mirrors it names;
        call from a running loop.  What of the map could not be done, a line each (MapError: no map)."""
        self._loop = asyncio.get_running_loop()
        mapped = mirror_map.load(self._map_path) if self._map_path else mirror_map.MirrorMap()
        kept = not self.listen[1] and mapped.listen is not None  # --listen's port 0: the map's port
        listen = (self.listen[0], mapped.listen) if kept else self.listen
        self.rules_changed()
        try:
            self._open_mirror(self.server, listen)
        except OSError as exc:  # named as tried
            where = f" (the port kept in {self._map_path})" if kept else ""
            raise UserError(f"cannot listen on {listen[0]}:{listen[1]}{where}: {exc.strerror}") from None
        return self._reopen(mapped) + self._save_map()

    def _reopen(self, mapped: mirror_map.MirrorMap) -> list[str]:
        """The mirrors of a map on their old ports: their endpoints' sessions go on through them."""
        problems = [f"{self._map_path}: left out an entry that is not a mirror: {entry}" for entry in mapped.skipped]
        for entry in mapped.mirrors:
            if entry.real in self._mirrors:
                continue
            try:
                self._open_mirror(entry.real, (self.listen[0], entry.port))
            except OSError as exc:
                who = f"{escaped(entry.name or 'the endpoint')} ({entry.real[0]}:{entry.real[1]})"  # a name from the network
                problems.append(f"mapped port {entry.port} of {who} cannot be opened again ({exc.strerror}): "
                                "it gets a new mirror port when it next sends, which may end its session")
                continue
            if entry.name:
                self.names[entry.real] = entry.name
        return problems

    def _map_changed(self) -> None:
        """A mirror opened: write the map soon, once for every change made meanwhile, so that a flood
        of new endpoints costs a write per MAP_DELAY, not one each.  By then the endpoint's first
        datagram has taught its name too (a name learned later is written with the next change)."""
        if self._map_path is not None and not self._map_due and not self._map_failed:
            self._map_due = True
            self._loop.call_later(MAP_DELAY, self._flush_map)

    def _flush_map(self) -> None:
        if self._map_due and self._mirrors:  # not stopped meanwhile
            for problem in self._save_map():
                print(f"{prog()}: {problem}", file=sys.stderr)

    def _save_map(self) -> list[str]:
        """Write the map (with --map) now; a failure is said once, and the proxy goes on without it."""
        self._map_due = False
        if self._map_path is None or self._map_failed:
            return []
        mirrors = [mirror_map.Mapped(real, m.address[1], self.names.get(real))
                   for real, m in self._mirrors.items() if real != self.server]
        try:
            mirror_map.save(self._map_path, self.address[1], mirrors)
        except OSError as exc:
            self._map_failed = True
            return [f"cannot write the map {self._map_path} ({exc.strerror}): mirror ports are not kept from now on"]
        return []

    def stop(self) -> None:
        self._map_due = True  # the last names learned, with whatever else is not written yet
        self._flush_map()
        for mirror in self._mirrors.values():
            self._loop.remove_reader(mirror.sock.fileno())
            mirror.sock.close()
        self._mirrors.clear()
        if self._log:
            self._log.close()
            self._log = None

    def _open_mirror(self, real: Address, bind: Address | None = None) -> _Mirror:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(bind or (self.listen[0], 0))
        except OSError:
            sock.close()
            raise
        mirror = self._mirrors[real] = _Mirror(real, sock)
        self._loop.add_reader(sock.fileno(), self._readable, mirror)
        self._map_changed()
        return mirror

    def _readable(self, mirror: _Mirror) -> None:
        # A batch, then back to the loop (it calls again while there is more): a flood on one
        # socket must not starve the others, the timers of delayed copies or the control API.
        for _ in range(READ_BATCH):
            try:
                data, src = mirror.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send; nothing to forward
            self._forward(mirror, data, src[:2])

    def _forward(self, to_mirror: _Mirror, data: bytes, src: Address) -> None:
        dst = to_mirror.real
        from_mirror = self._mirrors.get(src) or self._new_endpoint(src)
        if from_mirror is None:
            return
        msg = self.layer.decode(data)
        if msg is None:  # not of the layer: only the rules' address, size and bytes keys can match it
            kind, shown, msg_id = None, None, None
        else:
            kind, shown, msg_id, sender = self.layer.describe(msg)
            if sender is not None:
                self.names.setdefault(src, sender)
        src_name, dst_name = self._name(src), self._name(dst)
        now = self._loop.time()
        if self._phases:
            self._announce_due(now)
        decision = self.plan.decide(data, kind, src_name, dst_name, now=now,
                                    datagram=Datagram(data, src, dst, msg, self.layer))
        if msg is None:
            self.counters[NON_CHAT] += 1
            if decision.rule is not None:
                self.counters[self._other[decision.action]] += 1
        else:
            self.counters[decision.action] += 1
        if self._log is not None and (msg is not None or decision.rule is not None):  # others: when a rule took them
            self._record(decision, shown, msg_id, src_name, dst_name, len(data), msg)
        flow = (src, dst)
        if decision.hold:
            held = (from_mirror, data)
            self.holds.hold(flow, held)
            self._loop.call_later(self.holds.max_hold, self._expire, flow, held)
            return
        for delay, copy in decision.copies:
            if delay:
                self._loop.call_later(delay, self._send, from_mirror, copy, dst)
            else:
                self._send(from_mirror, copy, dst)
        if decision.copies:
            for mirror, copy in self.holds.release(flow):  # a held datagram now arrives after this one
                self._send(mirror, copy, dst)

    def _expire(self, flow: tuple[Address, Address], held: tuple[_Mirror, bytes]) -> None:
        if self.holds.expire(flow, held):
            self._send(held[0], held[1], flow[1])

    def _new_endpoint(self, src: Address) -> _Mirror | None:
        """A mirror for a new source, or None (counted) when there is no room for one: past
        max_endpoints, or the system refused another socket.  The endpoints there are keep theirs."""
        if len(self._mirrors) < self.max_endpoints:
            try:
                return self._open_mirror(src)
            except OSError:
                pass  # out of files or ports: as full
        self.counters[REFUSED] += 1
        return None

    def _send(self, mirror: _Mirror, data: bytes, dst: Address) -> None:
        if mirror.sock.fileno() < 0:
            return  # stopped while this copy was delayed
        self.counters["forwarded"] += 1
        with contextlib.suppress(OSError):
            mirror.sock.sendto(data, dst)

    def _name(self, addr: Address) -> str:
        return self.names.get(addr) or f"{addr[0]}:{addr[1]}"

    def _record(self, decision: Decision, kind: str | None, msg_id: int | None, src: str, dst: str, size: int, msg) -> None:
        row = {
            "time": round(time.time(), 6),  # wall clock, to line up with packet captures
            "from": src,
            "to": dst,
            "type": kind,
            "id": msg_id,
            "action": decision.action,
            "rule": None if decision.rule is None else decision.rule + 1,  # numbered from 1, as everywhere shown
            "bytes": size,
        }
        if decision.copies and decision.copies[0][0]:  # held back (delay, rate): for how long, in seconds
            row["delay"] = round(decision.copies[0][0], 6)
        fields = None if msg is None else self.layer.as_json(msg)
        if fields is not None:
            row["fields"] = fields  # --layer: the decoded fields, for whoever reads the log
        self._log.write(json.dumps(row) + "\n")
        self._log.flush()


# -- command line ----------------------------------------------------------------------------


def _print_stats(proxy: LossyProxy) -> None:
    from rich.console import Console

    rows = [(number, rule.text, rule.selected, rule.applied) for number, rule in enumerate(proxy.plan.rules, 1)]
    numbers = ("#", "selected", "applied")
    if any(rule.link for rule in proxy.plan.rules):  # a rate's queue drops, among what it applied to
        rows = [(*row, rule.overflow) for row, rule in zip(rows, proxy.plan.rules)]
        numbers += ("over limit",)
    Console(stderr=True).print(rich_grid(("#", "rule", *numbers[1:]), rows, numbers, title="lossy proxy: counts per rule"))
    print(f"totals: {totals(proxy.counters, proxy.layer.name)}", file=sys.stderr)


def totals(counters: Counter[str], layer: str = "chat") -> str:
    """Each count once: datagrams in, what befell those of the layer (one action each) and, if a rule
    took any, the others, datagrams out."""
    actions = {action: counters[action] for action in ACTIONS if counters[action]}
    chat, other = sum(actions.values()), counters[NON_CHAT]
    if not chat + other + counters[REFUSED]:
        return "no traffic"
    fates = ": " + ", ".join(f"{action} {n}" for action, n in actions.items()) if chat else ""
    others = ""
    if any(counters[NON_CHAT + action] for action in ACTIONS if action != "pass"):
        taken = {action: counters[NON_CHAT + action] for action in ACTIONS}
        taken["pass"] = other - sum(n for action, n in taken.items() if action != "pass")  # taken by no rule too
        others = ": " + ", ".join(f"{action} {n}" for action, n in taken.items() if n)
    refused = f"; {counters[REFUSED]} from new endpoints refused (no room for their mirrors)" if counters[REFUSED] else ""
    return f"{counted(chat + other, 'datagram')} in ({chat} {layer}{fates}; {other} not {layer}{others}{refused}), {counters['forwarded']} out"


def check_fields(rules: list[Rule], layer) -> None:
    """A field.NAME= the layer does not have would never match: say so before starting."""
    for rule in rules:
        for test in rule.where:
            path = getattr(test, "path", None)
            if path and path[0] not in layer.fields:
                raise RuleError(f"the {layer.name} layer has no field '{path[0]}' (rule '{rule.text}')")


def read_rules(texts: list[str], path: str | None) -> list[Rule]:
    """The rules of the command line, then those of the --rules file (one a line, # comments)."""
    if path:
        with open(path, encoding="utf-8") as f:
            texts = texts + [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]
    return [Rule.parse(t) for t in texts]


def _reload(proxy: LossyProxy, texts: list[str], path: str) -> None:
    """SIGHUP: the rules of the start again, from the file as it is now; sessions stay as they are."""
    try:
        proxy.replace_rules(read_rules(texts, path))
    except (RuleError, OSError) as exc:
        print(f"{prog()}: rules not reloaded (the old ones stay): {exc}", file=sys.stderr)
        return
    print(f"{prog()}: reloaded {path}: {counted(len(proxy.plan.rules), 'rule')}", file=sys.stderr)


CONTROL_HELP = """
Control (--control HOST:PORT): an HTTP/JSON API, shaped like Toxiproxy's, to list, add, change and
remove rules and read their counters while the proxy runs (docs/proxy-control.md); from a shell:

    chatapp-proxy ctl HOST:PORT list|add RULE|set ID RULE|remove ID|reset|reload|stats

--map FILE keeps each client's mirror port across restarts of the proxy; SIGHUP reloads --rules FILE.
"""


@dependencies()
@reader_may_leave
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ctl"]:
        from tools import ctl

        return ctl.main(argv[1:])
    parser = Parser(
        prog=prog(),
        description="Fault-injecting UDP proxy for ChatApp: clients use --listen as the server address.",
        epilog=faults.__doc__[faults.__doc__.index("Rules"):] + CONTROL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--listen", type=host_port, required=True, metavar="HOST:PORT", help="address clients use as the server's (port 0: any)")
    parser.add_argument("--server", type=host_port, required=True, metavar="HOST:PORT", help="the real server")
    parser.add_argument("--rule", action="append", default=[], metavar="RULE", help="a rule (repeatable; see below)")
    parser.add_argument("--rules", metavar="FILE", help="rules from a file, one per line, # comments")
    parser.add_argument("--scenario", metavar="FILE", help="rules scheduled in time, 'at 3s for 8s: RULE' per line (after --rule/--rules)")
    parser.add_argument("--seed", type=int, help="seed for the random choices (p=, jitter, corrupt, loss models, delay distributions)")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per datagram of the layer (and per other datagram a rule took) and action")
    parser.add_argument("--stats", action="store_true", help="print counts per rule on exit")
    parser.add_argument("--layer", metavar="MODULE:CLASS",
                        help="decode datagrams with this Scapy layer instead of the chat layer, for field.NAME= matches and the log "
                             "(e.g. scapy.layers.dns:DNS, scapy.contrib.coap:CoAP)")
    parser.add_argument("--max-hold", type=float, default=1.0, metavar="S", help="longest a 'hold' keeps a datagram (default 1)")
    parser.add_argument("--max-endpoints", type=positive(int), default=MAX_ENDPOINTS, metavar="N",
                        help=f"endpoints (mirror ports) at most; datagrams from more are dropped and counted (default {MAX_ENDPOINTS})")
    parser.add_argument("--control", type=host_port, metavar="HOST:PORT",
                        help="serve the control API here (HOST empty: 127.0.0.1; port 0: any, said on stderr)")
    parser.add_argument("--map", metavar="FILE", help="keep the mirror ports in FILE, and open them again at start")
    args = parser.parse_args(argv)
    try:
        rules = read_rules(list(args.rule), args.rules)
        scenario = scenarios.load(args.scenario) if args.scenario else None
        layer = layers.load(args.layer)
        check_fields(rules, layer)
        if args.log:
            open(args.log, "a", encoding="utf-8").close()  # fail here, not as a listening error later
    except (RuleError, scenarios.ScenarioError, layers.LayerError, OSError) as exc:
        print(f"{prog()}: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        proxy = LossyProxy(args.server, args.listen, rules, args.seed, args.log, args.max_hold, layer, args.map,
                           args.max_endpoints)
        for problem in proxy.start():
            print(f"{prog()}: {problem}", file=sys.stderr)
        if scenario is not None:
            proxy.play(scenario)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.rules:
            loop.add_signal_handler(signal.SIGHUP, _reload, proxy, list(args.rule), args.rules)
        if args.control:
            from tools import control, control_http

            reload = (lambda: read_rules(list(args.rule), args.rules)) if args.rules else None
            api = control.ControlAPI(proxy, reload)
            try:
                served = await control_http.serve(api.handle, *args.control)
            except OSError as exc:
                proxy.stop()
                raise UserError(f"cannot serve the control API on {args.control[0]}:{args.control[1]}: {exc.strerror}") from None
            chost, cport = served.sockets[0].getsockname()[:2]
            if not chost.startswith("127."):
                print(f"{prog()}: the control API has no authentication, and {chost} is not loopback", file=sys.stderr)
            print(f"control on http://{chost}:{cport}", file=sys.stderr, flush=True)
        host, port = proxy.address
        # Only now: whoever waits for this line may stop the proxy at once.
        said = counted(len(rules), "rule") if rules else "no rules: every datagram passes"
        if scenario is not None:
            said = f"{counted(len(rules), 'rule')}, scenario {args.scenario}: {counted(len(scenario.phases()), 'phase')}"
        print(f"lossy proxy on {host}:{port} -> server {args.server[0]}:{args.server[1]} ({said})", flush=True)
        await stop.wait()
        proxy.stop()
        if args.stats:
            _print_stats(proxy)

    try:
        asyncio.run(serve())
    except mirror_map.MapError as exc:
        print(f"{prog()}: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"{prog()}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog()}: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
