"""The chat client's protocol logic (sans-IO).

Drive it with ``start(now)``, typed lines through ``command(line, now)`` (or the
same commands through ``send_private``, ``create_group``, ... as a program would),
datagrams through ``receive(data, addr, now)``, the time through
``handle_timer(now)``, and ``shutdown(now)`` for Ctrl+C, end of input and
signals; collect what it sends and what happened (``node/events.py``) with
``drain(now)``.  Commands run one at a time, in order: a command that waits for
an answer holds the ones after it.
"""

from __future__ import annotations

import random
import sys
from collections import Counter, deque
from types import MappingProxyType
from typing import Callable

from proto import (
    MAX_NAME_BYTES,
    MAX_TEXT_BYTES,
    MSG_TYPES,
    ListMore,
    STATUS_CODES,
    STATUSES,
    ProtocolError,
)
from proto.fastpath import Fields, parse
from proto.fields import layer_spec
from proto.messages import ANSWERS, CLIENT, SERVER, received_by, sent_only_by

from . import commands as cmd
from . import events as ev
from .effects import Address, Exit
from .limits import EventQueue, Limits, RateLimiter
from .names import sendable, text_too_long, valid_group_name
from .ordering import GroupOrder
from .peers import Peer, PeerRows
from .reliable import Endpoint, Outgoing, RetryPolicy, is_newer
from .session import ACTIVE, REGISTERED, Session, State, Trigger
from .tables import TablePrinter
from .versions import OtherVersions

STATUS_OK = STATUS_CODES["ok"]
STATUS_MORE = STATUS_CODES["more"]
STATUS_NOT_IN_GROUP = STATUS_CODES["not_in_group"]

# Datagrams that only the server may send to a client.
FROM_SERVER_ONLY = sent_only_by(SERVER)
# A registration the server forgot before its confirm came (it restarted; or the registration
# expired, or a flood of others pushed it out) is started again, this many times at most.
FORGOTTEN_REGISTRATIONS = 3
LIST_END = 1 << layer_spec(ListMore).field("start").bits  # list_more's start is below this


class ClientLogic:
    def __init__(
        self,
        name: str,
        server: Address,
        port: int = 0,
        policy: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
        limits: Limits = Limits(),
        peers: PeerRows | None = None,
    ):
        self.name = name
        self.server = server
        self.net = Endpoint(name, port, policy, rng or random.SystemRandom())
        self._session = Session()
        self._registrations_forgotten = 0  # since the last welcome
        self.exit_status: int | None = None
        self.group: str | None = None
        self.table: dict[str, Peer] = {}
        self._table_view = MappingProxyType(self.table)
        self._peers = peers if peers is not None else PeerRows()  # clients of one process may share theirs
        self.table_version = 0
        self.outbox: list = []  # what happened since the last drain (node/events.py), and Exit
        self.queued = EventQueue(limits)  # private messages received in group mode, to show later
        # The group's messages, shown in the server's numbering; those that come before the answer
        # to join_group (which says where this member starts) are held too.
        self._joining: str | None = None  # the group asked for, while State.JOINING
        self.refused = 0  # private messages refused since the queue was last printed: it was full
        self.drops: Counter[str] = self.net.drops  # one count: the endpoint's own drops are in it too
        self._order = GroupOrder(limits, policy.window + policy.timeout, self.net.call_at, self._emit, self.drops)
        self.session = 0  # our public session number, from the server
        self._last_from: dict[str, tuple[int, int]] = {}  # peer -> (session, newest msg id shown)
        self._rate = RateLimiter(limits.rate, limits.burst)
        self._versions_seen = OtherVersions(self.drops, self._emit)
        self._waiting: deque[str | cmd.Command | cmd.EndOfInput] = deque()  # commands waiting for their turn
        self._printer = TablePrinter(self.net.call_at, lambda: len(self.table), self._show_table)
        # _do_<word> for each command of the grammar; _on_<type> for each request a client receives
        self._performers = {form.command: getattr(self, "_do_" + word) for word, form in cmd.GRAMMAR.items()}
        self._receivers = {kind: getattr(self, "_on_" + kind) for kind in received_by(CLIENT)}

    @property
    def state(self) -> State:
        return self._session.state

    @property
    def registered(self) -> bool:
        """Welcomed by the server, and not gone since."""
        return self._session.state in REGISTERED

    # -- driving interface ----------------------------------------------------

    def start(self, now: float) -> None:
        self._register(now)
        self._emit(ev.Registering(self.name, self.server))

    def _register(self, now: float) -> None:
        # A nonce in the header: the reg_ack must echo it, so a forged one needs a 64-bit guess.
        self._request(self.net.build("reg", self.net.nonce()), now, self._on_reg_ack)

    def command(self, line: str, now: float) -> None:
        """A typed line: parsed (``node/commands.py``) and run when its turn comes."""
        self._submit(sendable(line), now)

    def end_of_input(self, now: float) -> None:
        """Ctrl+D or the end of a script: run what was typed, then deregister."""
        self._submit(cmd.EndOfInput(), now)

    # What a user can ask for, as a program asks it: each waits its turn behind the commands
    # before it, runs as the typed command would (in the mode it allows), and reports its
    # outcome as events (a Delivered, a ListedGroups, an InvalidCommand in the wrong mode, ...).

    def send_private(self, target: str, text: str, now: float) -> None:
        self._submit(cmd.SendPrivate(target, text), now)

    def create_group(self, group: str, now: float) -> None:
        self._submit(cmd.CreateGroup(group), now)

    def list_groups(self, now: float) -> None:
        self._submit(cmd.ListGroups(), now)

    def join_group(self, group: str, now: float) -> None:
        self._submit(cmd.JoinGroup(group), now)

    def send_group(self, text: str, now: float) -> None:
        self._submit(cmd.SendGroup(text), now)

    def list_members(self, now: float) -> None:
        self._submit(cmd.ListMembers(), now)

    def leave_group(self, now: float) -> None:
        self._submit(cmd.LeaveGroup(), now)

    def list_clients(self, now: float) -> None:
        self._submit(cmd.ListClients(), now)

    def deregister(self, now: float) -> None:
        self._submit(cmd.Deregister(self.name), now)

    def help(self, now: float) -> None:
        self._submit(cmd.Help(), now)

    def shutdown(self, now: float) -> None:
        """Ctrl+C or a signal: drop what is under way, deregister (best effort), exit."""
        state = self._session.state
        if state is State.CLOSING or state is State.EXITED:
            return
        if state is State.REGISTERING:
            self._exit(1)  # nothing to undo
            return
        self._waiting.clear()
        self.net.cancel_all()
        self._dereg(now)

    def receive(self, data: bytes, addr: Address, now: float) -> None:
        if self._session.state is State.EXITED:
            return
        if addr != self.server and not self._rate.allow(addr, now):  # the server's own pace is its business
            self.drops["rate-limited"] += 1
            return
        try:
            pkt = parse(data)
        except ProtocolError:
            if not self._versions_seen.check(data, addr):
                self.drops["malformed"] += 1
            return
        kind = MSG_TYPES[pkt.type]
        if kind in ANSWERS:
            self.net.handle_ack(pkt, addr, now)  # counts what answers nothing, or is of the wrong type
            return
        handler = self._receivers.get(kind)
        if handler is None:
            self.drops["unexpected type"] += 1
        elif kind in FROM_SERVER_ONLY and (addr != self.server or pkt.token != self.net.token or not pkt.token):
            # The server's address is easy to forge; our token (0 until reg_ack) is not.
            self.drops["not from server" if addr != self.server else "forged"] += 1
        elif not self.net.answer_again(pkt, addr, now):
            handler(pkt, addr, now)

    def get_timer(self) -> float | None:
        return None if self._session.state is State.EXITED else self.net.get_timer()

    def handle_timer(self, now: float) -> None:
        if self._session.state is not State.EXITED:
            self.net.handle_timer(now)

    def drain(self, now: float) -> list:
        """The datagrams to send, then what happened (events, and Exit last), since the last drain."""
        effects = self.net.drain()
        if self.outbox:
            effects += self.outbox
            self.outbox = []
        return effects

    # -- commands ---------------------------------------------------------------

    def _submit(self, item: str | cmd.Command | cmd.EndOfInput, now: float) -> None:
        state = self._session.state
        if state is State.IDLE and not self._waiting:
            self._execute(item, now)  # its turn already
        elif state is not State.CLOSING and state is not State.EXITED:
            self._waiting.append(item)
            self._run_waiting(now)

    def _run_waiting(self, now: float) -> None:
        while self._session.state is State.IDLE and self._waiting:
            self._execute(self._waiting.popleft(), now)

    def _execute(self, item: str | cmd.Command | cmd.EndOfInput, now: float) -> None:
        if isinstance(item, cmd.EndOfInput):
            self._dereg(now)
            return
        # A typed line is parsed when its turn comes: the ones before it may have changed the mode.
        command = cmd.parse(item) if isinstance(item, str) else item
        if command is None:
            return
        in_group = self.group is not None
        if isinstance(command, cmd.ParseError):
            if command.command is not None and not cmd.allowed(command.command, in_group):
                self._invalid(command.command)  # the wrong mode: its form would not help
            else:
                self._invalid(command.command, command.usage)
        elif not cmd.allowed(command.word, in_group):
            self._invalid(command.word)
        else:
            self._performers[type(command)](command, now)

    def _do_send(self, command: cmd.SendPrivate, now: float) -> None:
        target, text = command.target, command.text
        peer = self.table.get(target)
        if peer is None:
            self._emit(ev.UnknownUser(target))
        elif not self._text_fits(text):
            return
        else:  # listed offline too: the table may be stale, so try as for anyone (as the original does)
            listed_offline = not peer.online
            # A nonce, not our token (the peer must never see it): the ack must echo it.
            out = self.net.build("pri_msg", self.net.nonce(), session=self.session, to_session=peer.session, text=text)
            self._session.to(Trigger.ASKED)
            self.net.request(
                out,
                peer.addr,
                now,
                on_ack=lambda ack, now: self._finish(now, self._delivery(target, ack.payload.status)),
                on_fail=lambda now: self._report_silent_peer(target, text, now, listed_offline),
            )

    @staticmethod
    def _delivery(target: str, status: int):
        """What a peer's answer to a private message means (the peer is alive: no kick)."""
        if status == STATUS_OK:
            return ev.Delivered(target)
        return ev.NotDelivered(target, STATUSES.get(status))

    def _report_silent_peer(self, target: str, text: str, now: float, listed_offline: bool) -> None:
        self._emit(ev.NoAck(target, listed_offline, text))
        self._request(self.net.build("kick", target=target), now, lambda ack, now: self._finish(now))

    def _do_create_group(self, command: cmd.CreateGroup, now: float) -> None:
        group = command.group
        if not valid_group_name(group):
            self._emit(ev.BadGroupName(group, self._name_problem(group)))
        else:
            outcomes = {
                "ok": ev.CreatedGroup(group),
                "group_exists": ev.GroupExists(group),
                "too_many_groups": ev.CreateGroupRefused(group, "too_many_groups"),
                "quota": ev.CreateGroupRefused(group, "quota"),
            }
            self._ask(self.net.build("create_group", group=group), now, outcomes)

    @staticmethod
    def _name_problem(name: str) -> str:
        """What is wrong with a name ``valid_group_name`` refused, as ``BadGroupName`` names it."""
        if ";" in name:
            return "semicolon"
        if any(ch.isspace() for ch in name):
            return "whitespace"
        return "too_long" if len(name.encode("utf-8")) > MAX_NAME_BYTES else "unprintable"

    def _do_list_groups(self, command: cmd.ListGroups, now: float) -> None:
        def listed(groups: list[str], now: float) -> None:
            self._finish(now, ev.ListedGroups(tuple(groups)))

        self._list(self.net.build("list_groups"), "list_groups", "", now, listed)

    def _do_join_group(self, command: cmd.JoinGroup, now: float) -> None:
        group = command.group
        if not valid_group_name(group):
            self._emit(ev.NoSuchGroup(group))
            return

        def joined(ack: Fields, now: float) -> None:
            status = STATUSES.get(ack.payload.status)
            self._joining = None
            if status == "ok":
                self.group = group
                self._emit(ev.JoinedGroup(group))
                self._order.start(ack.payload.seq, now)  # shows the group messages that came before this answer
                self._finish(now)
                return
            self._order.reset()
            if status == "no_such_group":
                self._finish(now, ev.NoSuchGroup(group))
            else:
                self._unexpected(status, now)

        self._joining = group
        self._order.reset()
        self._session.to(Trigger.JOINING)
        self._request(self.net.build("join_group", group=group), now, joined)

    def _do_send_group(self, command: cmd.SendGroup, now: float) -> None:
        text = command.text
        if self._text_fits(text):
            outcome = {"ok": ev.GroupMessageSent(self.group)}
            self._ask(self.net.build("send_group", group=self.group, text=text), now, outcome,
                      on_fail=lambda now: self._server_gone(now, text),
                      on_ok=lambda ack, now: self._order.own(ack.payload.seq, now))

    def _do_list_members(self, command: cmd.ListMembers, now: float) -> None:
        group = self.group

        def listed(members: list[str], now: float) -> None:
            self._finish(now, ev.ListedMembers(group, tuple(members)))

        self._list(self.net.build("list_members", group=group), "list_members", group, now, listed)

    def _do_leave_group(self, command: cmd.LeaveGroup, now: float) -> None:
        group = self.group

        def left(ack: Fields, now: float) -> None:
            if self._left_behind(ack, now) or self._refused(ack, now):
                return
            self._order.flush()  # received (and acknowledged) while in the group
            self.group = None
            self._emit(ev.LeftGroup(group))
            self._flush_queue()
            self._finish(now)

        self._begin(self.net.build("leave_group", group=group), now, left)

    def _do_list_clients(self, command: cmd.ListClients, now: float) -> None:
        self._emit(ev.ListedClients(self._table_view, self.group))

    def _do_dereg(self, command: cmd.Deregister, now: float) -> None:
        if command.name != self.name:
            self._invalid(command.word, cmd.GRAMMAR[command.word].usage)
            return
        self._dereg(now)

    def _do_help(self, command: cmd.Help, now: float) -> None:
        self._emit(ev.HelpShown())

    # -- requests to the server -----------------------------------------------------

    def _request(self, out: Outgoing, now: float, on_ack: Callable[[Fields, float], None],
                 on_fail: Callable[[float], None] | None = None) -> None:
        self.net.request(out, self.server, now, on_ack, on_fail=on_fail or self._server_gone)

    def _begin(self, out: Outgoing, now: float, on_ack: Callable[[Fields, float], None],
               on_fail: Callable[[float], None] | None = None) -> None:
        """A command's request: the commands after it wait for its answer."""
        self._session.to(Trigger.ASKED)
        self._request(out, now, on_ack, on_fail)

    def _list(self, first: Outgoing, kind: str, group: str, now: float, listed: Callable[[list[str], float], None]) -> None:
        """Ask for a list, then for its next part while an answer says ``more`` (a long list
        comes in parts that each fit one datagram); ``listed`` gets all of it."""
        items: list[str] = []

        def answered(ack: Fields, now: float) -> None:
            more = ack.payload.status == STATUS_MORE
            if not more and (self._left_behind(ack, now) or self._refused(ack, now)):
                return
            items.extend(item.value for item in ack.payload.items)
            if more and ack.payload.items and len(items) < LIST_END:  # a list stops where start can count no further
                self._request(self.net.build("list_more", list=kind, start=len(items), group=group), now, answered)
            else:
                listed(items, now)

        self._begin(first, now, answered)

    def _ask(self, out: Outgoing, now: float, outcomes: dict[str, object],
             on_fail: Callable[[float], None] | None = None,
             on_ok: Callable[[Fields, float], None] | None = None) -> None:
        """A request whose answer is one event per status (``on_ok`` first, if it is ok)."""

        def answered(ack: Fields, now: float) -> None:
            if self._left_behind(ack, now):
                return
            status = STATUSES.get(ack.payload.status)
            if on_ok is not None and status == "ok":
                on_ok(ack, now)
            if status in outcomes:
                self._finish(now, outcomes[status])
            else:
                self._unexpected(status, now)

        self._begin(out, now, answered, on_fail)

    def _left_behind(self, ack: Fields, now: float) -> bool:
        """The server dropped us from our group: say so, leave group mode, go on."""
        if ack.payload.status != STATUS_NOT_IN_GROUP or self.group is None:
            return False
        self._order.flush()
        self._emit(ev.RemovedFromGroup(self.group))
        self.group = None
        self._flush_queue()
        self._finish(now)
        return True

    def _refused(self, ack: Fields, now: float) -> bool:
        """A request without an outcome per status was turned down (the server forgot us, say): handle it."""
        if ack.payload.status == STATUS_OK:
            return False
        self._unexpected(STATUSES.get(ack.payload.status), now)
        return True

    def _unexpected(self, status: str | None, now: float) -> None:
        if status == "not_registered":
            self._register_again(now)
        else:
            self._finish(now, ev.RequestRefused(status))

    def _register_again(self, now: float) -> None:
        """The server no longer knows our session (it restarted, or took us for gone): register
        again under our name (refused, as any registration, if someone else holds it now).  The
        command that learnt it is not carried out; the ones typed after it wait for the welcome.
        A new session starts outside any group, and with a table started afresh: a restarted
        server counts its table versions from 1 again, and its message ids from a new random
        point (what we acknowledged from the old one, and the replay floor, no longer apply)."""
        self._emit(ev.ServerForgotUs())
        self.group = None
        self._flush_queue()
        self.net.forget(self.server)
        self.net.token = 0  # the old session's: datagrams still carrying it are refused
        self.table.clear()
        self.table_version = 0
        self._session.to(Trigger.FORGOTTEN)
        self._register(now)

    def _dereg(self, now: float) -> None:
        self._session.to(Trigger.DEREGISTERING)
        self._waiting.clear()
        self._request(self.net.build("dereg"), now, lambda ack, now: self._exit(0, ev.Deregistered()))

    def _on_reg_ack(self, ack: Fields, now: float) -> None:
        """Confirm at once, with the new token: that shows the server this address is ours."""
        if self._refused_registration(ack):
            return
        self.net.token = ack.payload.token
        self.session = ack.payload.session
        self._request(self.net.build("confirm"), now, self._on_confirmed)

    def _on_confirmed(self, ack: Fields, now: float) -> None:
        """Our session has started (and the server broadcasts it): welcome."""
        if STATUSES.get(ack.payload.status) == "not_registered" and self._registrations_forgotten < FORGOTTEN_REGISTRATIONS:
            self._registrations_forgotten += 1
            self.net.token = 0  # the forgotten registration's: nothing carrying it is for us any more
            self._register(now)
            return
        if self._refused_registration(ack):
            return
        self._registrations_forgotten = 0
        self._session.to(Trigger.WELCOMED)
        self._emit(ev.Registered())
        if self.table_version:
            self._show_table()
        self._run_waiting(now)

    def _refused_registration(self, ack: Fields) -> bool:
        status = STATUSES.get(ack.payload.status)
        if status == "ok":
            return False
        self._exit(1, ev.RegistrationFailed(status))
        return True

    def _server_gone(self, now: float, unsent: str | None = None) -> None:
        self._exit(1, ev.ServerGone(self.group, unsent))

    # -- incoming ---------------------------------------------------------------------

    def _on_table(self, pkt: Fields, addr: Address, now: float) -> None:
        update = pkt.payload
        newer = is_newer(update.version, self.table_version)  # versions may wrap around
        if newer and update.base and is_newer(update.base, self.table_version):
            self._ack(pkt, addr, now, "resync")  # we missed the versions in between
            return
        if newer:
            table, row = self.table, self._peers.get
            for entry in update.entries:
                table[sys.intern(entry.client)] = row(entry.ip, entry.port, entry.online, entry.session)
            self.table_version = update.version
            if self.registered:
                self._printer.changed(now)
        self._ack(pkt, addr, now, "ok")
        me = self.table.get(self.name)
        if self._session.state in ACTIVE and me is not None and not me.online:
            self._exit(1, ev.MarkedOffline())

    def _on_grp_msg(self, pkt: Fields, addr: Address, now: float) -> None:
        msg = pkt.payload
        group = msg.group
        if group == self.group or (group == self._joining and self._session.state is State.JOINING):
            if not self._order.add(msg.seq, ev.GroupMessage(group, msg.origin, msg.text), msg.text_len, now):
                return  # too late for its turn, or no room (counted): no ack, as if it was lost
        self.net.acknowledge(pkt, addr, now)  # with the next ones, if they come close together

    def _on_probe(self, pkt: Fields, addr: Address, now: float) -> None:
        self._ack(pkt, addr, now, "ok")

    def _on_pri_msg(self, pkt: Fields, addr: Address, now: float) -> None:
        peer = self.table.get(pkt.sender)
        session = pkt.payload.session
        if not self.registered or peer is None or not peer.online or (peer.addr, peer.session) != (addr, session):
            self.drops["unknown sender"] += 1  # no ack: the sender retries once our table knows it
            return
        if pkt.payload.to_session != self.session:
            self.drops["for another session"] += 1  # replayed to us, or meant for our previous run
            return
        if text_too_long(pkt.payload.text):
            self.drops["oversized"] += 1  # no ack: a well-behaved sender refuses it before sending
            return
        last = self._last_from.get(pkt.sender)
        if last is not None and last[0] == session and not is_newer(pkt.msg_id, last[1]):
            self.drops["replayed"] += 1  # older than a message of the session already shown
            return
        self._last_from[pkt.sender] = (session, pkt.msg_id)
        message = ev.PrivateMessage(pkt.sender, pkt.payload.text)
        if self.group is None:
            self._ack(pkt, addr, now, "ok")
            self._emit(message)
        elif self.queued.add(message, pkt.payload.text_len):
            self._ack(pkt, addr, now, "ok")
        else:
            self.refused += 1
            self._ack(pkt, addr, now, "queue_full")  # the sender tells its user: not delivered

    # -- helpers ------------------------------------------------------------------------

    def _ack(self, pkt: Fields, addr: Address, now: float, status: str) -> None:
        self.net.answer(pkt, addr, self.net.build_answer(pkt, status=STATUS_CODES[status]), now)

    def _finish(self, now: float, outcome=None) -> None:
        """The current command is done: report its outcome, then run the next waiting one."""
        if outcome is not None:
            self._emit(outcome)
        self._session.to(Trigger.ANSWERED)
        self._run_waiting(now)

    def _text_fits(self, text: str) -> bool:
        if text_too_long(text):
            self._emit(ev.MessageTooLong(len(text.encode("utf-8")), MAX_TEXT_BYTES))
            return False
        return True

    def _invalid(self, command: str | None, usage: str | None = None) -> None:
        self._emit(ev.InvalidCommand(self.group, command, usage))

    def _emit(self, event) -> None:
        self.outbox.append(event)

    def _show_table(self) -> None:
        self._emit(ev.PeersChanged(self._table_view))

    def _flush_queue(self) -> None:
        """What was held in group mode comes out now, in arrival order."""
        self.outbox += self.queued.take()
        if self.refused:
            self._emit(ev.QueueOverflowed(self.refused))
            self.refused = 0

    def _exit(self, status: int, reason=None) -> None:
        if self.group is not None:
            self._order.flush()
        if reason is not None:
            self._emit(reason)
        self._flush_queue()
        self.net.cancel_all()
        self._session.to(Trigger.EXITING)
        self.exit_status = status
        self.outbox.append(Exit(status))
