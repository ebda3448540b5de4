"""The chat server's protocol logic (sans-IO).

Feed it datagrams with ``receive(data, addr, now)`` and the time with
``handle_timer(now)`` when ``get_timer()`` says; collect what it wants done with
``drain(now)``: the datagrams to send, and what happened as events (``node/events.py``).
It keeps the client table (name, observed address, online state, session token) and
the groups; ``node/sync.py`` keeps every online client's copy of the table up to date.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable

from proto import MSG_TYPES, STATUS_CODES, ProtocolError, RegAck
from proto.fastpath import Fields, parse
from proto.fields import layer_spec
from proto.messages import OPENS_SESSION, SERVER, received_by

from . import events as ev
from .console import Console
from .durable import Journaled, Kept, Restored, Unkept, read
from .effects import Address
from .limits import Limits, RateLimiter, SourceQuota
from .names import SERVER_NAME, text_too_long, valid_group_name, valid_username
from .ordering import next_seq
from .reliable import MAX_REMEMBERED_REPLIES, TOKEN_BITS, Endpoint, RetryPolicy, is_newer
from .store import MemoryStore
from .sync import TABLE_WINDOW, SyncState, TableSync
from .tables import TablePrinter, page
from .versions import OtherVersions

STATUS_OK = STATUS_CODES["ok"]
# A registration waits for its confirm (the proof that the client got reg_ack at that address) at
# most this many retry windows: long enough for a reg_ack and a confirm that each needed every try.
PENDING_WINDOWS = 2
MAX_PENDING = 1024  # registrations waiting for their confirm; past that, the oldest is forgotten
IDLE_PROBE = 30.0  # seconds of silence after which an online client is probed (0: never)
SESSION_BITS = layer_spec(RegAck).field("session").bits
ProbeEnd = Callable[[bool, float], None]  # (answered, now), when a probe ends


@dataclass(slots=True)  # slots: thousands of these, each a few hundred bytes smaller
class ClientRecord:
    name: str
    addr: Address
    token: int  # secret: requests must carry it
    session: int  # public: peers see it in the table
    reg_ids: tuple[int, ...] = ()  # msg ids of this name's latest registrations, to refuse replays
    last_id: int = 0  # msg id of the latest request processed for this session
    heard: float = 0.0  # when the server last had an authentic datagram from this session
    online: bool = True
    group: str | None = None
    # kept by node/sync.py:
    changed: int = 0  # table version in which this row last changed
    synced: int = 0  # table version this client has acknowledged
    sync: SyncState = SyncState.OFF  # where its table updates are
    table_msg: int | None = None  # msg_id of the table update in flight to it
    sync_pause: float = 0.0  # wait before trying again after an update went unanswered
    row: bytes = b""  # this client's table row as it goes on the wire, encoded when it changes


@dataclass(slots=True)
class PendingReg:
    """A registration answered with reg_ack, not yet confirmed: nothing has changed yet.

    Its session starts only when a ``confirm`` carrying ``token`` comes from ``addr``: whoever
    sent the ``reg`` in that address's name may not receive there (QUIC's address validation)."""

    name: str
    addr: Address
    token: int
    session: int
    reg_id: int  # msg id of the reg, remembered against replays once the session starts
    expires: float
    claiming: bool = False  # its confirm came, and waits for the probe of the name's online owner


class ServerLogic:
    def __init__(
        self,
        port: int = 0,
        policy: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
        limits: Limits = Limits(),
        table_window: int = TABLE_WINDOW,
        randbits: Callable[[int], int] = secrets.randbits,
        max_replies: int = MAX_REMEMBERED_REPLIES,
        idle_probe: float = IDLE_PROBE,
        store: MemoryStore | None = None,
    ):
        """``rng`` draws message ids and nonces; ``randbits(k)`` draws the session tokens and
        numbers (its default is unpredictable: a token is the proof of a session).  The bounds
        ``table_window`` (node/sync.py) and ``max_replies`` (node/reliable.py) are parameters
        for the tests that drive them past their limit.  ``idle_probe``: seconds of silence
        after which an online client is probed, and marked offline if it does not answer (0: never).
        ``store``: where the state is kept (``node/durable.py``), and read back from if it has
        any; then call ``resume(now)`` before anything else.  None: in memory only."""
        self._rng = rng or random.SystemRandom()
        self._randbits = randbits
        self.net = Endpoint(SERVER_NAME, port, policy, self._rng, max_replies)
        # What happened, to go out with the next drain (the endpoint keeps the datagrams).
        self._outbox: list = []
        self._emit = self._outbox.append
        self.limits = limits
        self._rate = RateLimiter(limits.rate, limits.burst)
        self.clients: dict[str, ClientRecord] = {}
        self.by_addr: dict[Address, str] = {}  # online clients only
        self.groups: dict[str, dict[str, None]] = {}  # group -> members, in joining order
        self._next_seq: dict[str, int] = {}  # group -> the number its next message gets (node/ordering.py)
        self._creators: dict[str, str] = {}  # group -> its creator's IP address (kept with the group)
        # Rows per source IP address: a name counts against the address of its latest
        # registration (its ``addr``), a group against its creator's; neither is ever removed.
        self._names_held = SourceQuota()
        self._groups_held = SourceQuota()
        self._sync = TableSync(self.net, self.clients, self._print_table, table_window)
        self._group_printer = TablePrinter(self.net.call_at, lambda: len(self.groups), self._print_groups)
        self._groups_shown = False  # the group table is printed (or set to be) for this batch of datagrams
        # _event(now, EventType, *fields): an event with a line of its own, merged with others of
        # its kind when they come too fast (node/console.py), and made only if it is printed
        self._event = Console(self.net.call_at, self._emit).event
        self.drops: Counter[str] = self.net.drops  # one count: the endpoint's own drops are in it too
        self._probing: dict[int, list[ProbeEnd]] = {}  # session token -> who waits for its probe to end
        self._idle_probe = idle_probe
        # by address: one registration waits per address, so forging regs from one address in
        # many names holds one entry; insertion order is expiry order (all live equally long)
        self._pending: OrderedDict[Address, PendingReg] = OrderedDict()
        self._pending_life = PENDING_WINDOWS * policy.window
        self._versions_seen = OtherVersions(self.drops, self._emit)
        # _on_<type> for each request a server receives (proto/messages.py)
        self._handlers = {kind: getattr(self, "_on_" + kind) for kind in received_by(SERVER)}
        self._kept = Unkept() if store is None else Kept(store, self.net)
        self._keeping = store is not None  # tested before the calls on a busy path: without a store they cost nothing
        self._restored = None if store is None else self._restore(store)

    # -- driving interface ----------------------------------------------------

    @property
    def version(self) -> int:
        """The client table's version: how many changes it has seen."""
        return self._sync.version

    def receive(self, data: bytes, addr: Address, now: float) -> None:
        if not self._rate.allow(addr, now):
            self._drop("rate-limited", addr)
            return
        try:
            pkt = parse(data)
        except ProtocolError as exc:
            if not self._versions_seen.check(data, addr):
                self._drop("malformed", addr, detail=exc)
            return
        kind = MSG_TYPES[pkt.type]
        if kind == "ack":
            # counts late or duplicate acks (normal under loss); one that answered is authentic
            if self.net.handle_ack(pkt, addr, now):
                name = self.by_addr.get(addr)
                if name is not None:
                    self.clients[name].heard = now
            return
        if self.net.answer_again(pkt, addr, now):
            return  # a retransmitted request: answered again, processed once
        handler = self._handlers.get(kind)
        if handler is None:
            self._drop("unexpected type", addr, kind)
            return
        if kind in OPENS_SESSION:  # reg, confirm: no session to check yet
            handler(pkt, addr, now)
            return
        record = self._authenticate(pkt, addr, now)
        if record is None:
            return
        record.last_id = pkt.msg_id
        record.heard = now
        handler(pkt, addr, now, record)
        if record.online:
            self._sync.contact(record, now)  # a client that missed an update is repaired on contact

    def get_timer(self) -> float | None:
        return self.net.get_timer()

    def handle_timer(self, now: float) -> None:
        self.net.handle_timer(now)

    def drain(self, now: float) -> list:
        """What to do now: the datagrams to send (``Send``), then the events since the last drain.
        The table updates of what changed since then go out now, one round for a whole batch."""
        self._groups_shown = False
        self._sync.round(now)
        if self._keeping:
            self._kept.flush(self._sync.version)
        effects = self.net.drain()
        outbox = self._outbox
        if outbox:
            effects += outbox
            outbox.clear()
        return effects

    # -- a restart ------------------------------------------------------------------

    def _restore(self, store: MemoryStore) -> Restored:
        """Rebuild the sessions, groups and memberships the store holds (an empty one holds none).
        The client table goes on at the stored version, each row with the version it changed in:
        a client that holds it needs nothing (``resume`` checks), and later deltas are exact."""
        rows = read(store)
        self.net.reserve_ids(rows.meta.get("next_id"), self._kept.reserve)
        clients, groups = self.clients, self.groups
        for name, addr, session, token, online, reg_ids, changed in rows.clients:
            clients[name] = ClientRecord(name, addr, token, session, reg_ids, online=online, changed=changed)
            self._names_held.move(addr[0])
            if online:
                self.by_addr[addr] = name
        self._sync.restore(rows.meta.get("table_version", 0))
        for name, creator_ip, first in rows.groups:
            groups[name], self._next_seq[name], self._creators[name] = {}, first, creator_ip
            self._groups_held.move(creator_ip)
        # (a file edited by hand may not hang together: what refers to nothing is left out)
        for group, name in rows.members:
            if group in groups and name in clients and clients[name].online:
                groups[group][name] = None
                clients[name].group = group
        rows = rows._replace(answers=[row for row in rows.answers if row[0] in clients])
        for name, msg_id, _ in rows.answers:
            clients[name].last_id = msg_id
        return rows

    def resume(self, now: float) -> None:
        """Start serving what was restored: answers given before are given again to a request
        that comes again, every client listed online is probed (and goes offline if it does not
        answer: its name is free then), and the journaled group messages are sent again, each
        with its message id and number, to the members that had not acknowledged it."""
        rows, self._restored = self._restored, None
        if rows is None:
            return
        for name, msg_id, data in rows.answers:
            self.net.remember(self.clients[name].addr, msg_id, data, now)
        online = [record for record in self.clients.values() if record.online]
        for record in online:
            record.heard = now
            self._probe(record, now)
            self._sync.check(record, now)
            if self._idle_probe > 0:
                self._watch(record, now + self._idle_probe)
        for msg_id, group, seq, origin, text, waiting in rows.journal:
            self._kept.store.delete("journal", (group, seq))  # journaled again below if anyone still waits
            if group in self.groups:
                self._send_group_message(group, seq, origin, text, now, (msg_id, waiting))
        if self.clients or self.groups:  # (a new file: nothing to say)
            self._emit(ev.StateResumed(len(self.clients), len(online), len(self.groups), len(rows.journal)))

    # -- requests ---------------------------------------------------------------

    def _on_reg(self, pkt: Fields, addr: Address, now: float) -> None:
        """Answer with a new token and wait for the confirm: until it comes, the old session of
        the name (if any) stays, nothing is broadcast, and only this reg_ack goes to ``addr``."""
        name = pkt.sender
        existing = self.clients.get(name)
        if existing is not None and pkt.msg_id in existing.reg_ids:
            self._drop("replayed", addr, "reg", name, pkt.msg_id)
            return
        # an online owner elsewhere is no refusal yet: it is probed once the claimant has proved its address
        status = "bad_name" if not valid_username(name) else self._refusal(name, addr, ask_owner=True)
        if status is not None:
            self.net.answer(pkt, addr, self.net.build_answer(pkt, status=STATUS_CODES[status]), now)
            self._emit(ev.RegistrationRefused(name, addr, status))
            return
        pending = self._await_confirm(name, addr, pkt.msg_id, now)
        # its header echoes the reg's nonce; the new token is in the payload
        answer = self.net.build_answer(pkt, status=STATUS_OK, token=pending.token, session=pending.session)
        self.net.answer(pkt, addr, answer, now)

    def _on_confirm(self, pkt: Fields, addr: Address, now: float) -> None:
        """The client got our reg_ack at ``addr``: its session starts now."""
        pending = self._pending.get(addr)
        if pending is None or pending.name != pkt.sender or pending.expires <= now:
            # Nothing waits here for that name (expired, replaced, or never sent): a genuine
            # client can tell its user.  The answer is no bigger than a reg_ack.
            self._drop("unregistered", addr, "confirm", pkt.sender)
            self._reply(pkt, addr, now, "not_registered")
            return
        if pending.token != pkt.token:
            self._drop("forged", addr, "confirm", pkt.sender)
            return
        if pending.claiming:
            return  # a retransmission: answered when the owner's probe ends
        status = self._refusal(pending.name, addr)  # another registration may have won meanwhile
        if status == "name_taken":
            self._claim(pkt, pending, now)
            return
        del self._pending[addr]
        self._settle(pkt, pending, status, now)

    def _claim(self, pkt: Fields, pending: PendingReg, now: float) -> None:
        """The name's owner is listed online at another address: it may be gone (crashed, or
        cut off when a proxy in front of the server restarted), so probe it before refusing.
        The probe has one try fewer than the claimant's confirm, so that the answer reaches
        the claimant before it gives up."""
        pending.claiming = True

        def probed(answered: bool, now: float) -> None:
            if self._pending.get(pending.addr) is not pending:
                return  # replaced by a new reg from that address, or forgotten: nothing to answer
            del self._pending[pending.addr]
            self._settle(pkt, pending, self._refusal(pending.name, pending.addr), now)

        tries = max(1, self.net.policy.tries - 1)
        self._probe(self.clients[pending.name], now, probed, tries)

    def _settle(self, confirm: Fields, pending: PendingReg, status: str | None, now: float) -> None:
        """Answer the confirm: the session starts (before the answer, which is kept with it), or
        ``status`` says why not."""
        if status is None:
            self._start_session(pending, confirm.msg_id, now)
        else:
            self._emit(ev.RegistrationRefused(pending.name, pending.addr, status))
        self._reply(confirm, pending.addr, now, status or "ok")

    def _refusal(self, name: str, addr: Address, ask_owner: bool = False) -> str | None:
        """Why ``name`` cannot have a session at ``addr`` now, or None.  With ``ask_owner``, an
        online owner at another address is not a reason (yet)."""
        existing = self.clients.get(name)
        holder = self.by_addr.get(addr)
        if existing is None and len(self.clients) >= self.limits.max_clients:
            return "server_full"
        if existing is not None and existing.online and existing.addr != addr and not ask_owner:
            return "name_taken"
        if holder is not None and holder != name:
            return "addr_taken"
        if not self._names_held.allows(addr[0], self.limits.max_names_per_ip, existing and existing.addr[0]):
            return "quota"
        return None

    def _await_confirm(self, name: str, addr: Address, reg_id: int, now: float) -> PendingReg:
        pending = self._pending
        if pending.pop(addr, None) is not None:  # a new reg from an address replaces its unconfirmed one
            self.drops["unconfirmed reg"] += 1
        while pending:  # the expired ones, oldest first, and the oldest if there is no room
            oldest = pending[next(iter(pending))]
            if oldest.expires > now and len(pending) < MAX_PENDING:
                break
            pending.popitem(last=False)
            self.drops["unconfirmed reg"] += 1
        randbits = self._randbits
        waiting = PendingReg(name, addr, randbits(TOKEN_BITS) or 1, randbits(SESSION_BITS), reg_id, now + self._pending_life)
        pending[addr] = waiting
        return waiting

    def _start_session(self, pending: PendingReg, confirm_id: int, now: float) -> None:
        """The confirmed registration replaces the name's old session, if any, and is broadcast."""
        name = pending.name
        existing = self.clients.get(name)
        if existing is not None:
            self._leave_group(existing)  # a new session starts outside any group
            if self.by_addr.get(existing.addr) == name:  # an offline client's old address may be someone else's now
                del self.by_addr[existing.addr]
        self._names_held.move(pending.addr[0], existing and existing.addr[0])
        reg_ids = (existing.reg_ids[-7:] if existing else ()) + (pending.reg_id,)
        record = ClientRecord(name, pending.addr, pending.token, pending.session, reg_ids, last_id=confirm_id, heard=now)
        self.clients[name] = record
        self.by_addr[pending.addr] = name
        self._sync.start(record, existing)
        self._kept.client(record)
        self._emit(ev.ClientRegistered(name, pending.addr))
        if self._idle_probe > 0:
            self._watch(record, now + self._idle_probe)

    def _on_dereg(self, pkt, addr, now, record: ClientRecord) -> None:
        self._reply(pkt, addr, now, "ok")
        self._go_offline(record, now)
        self._emit(ev.ClientDeregistered(record.name))

    def _on_create_group(self, pkt, addr, now, record: ClientRecord) -> None:
        group = pkt.payload.group
        if not valid_group_name(group):
            self._reply(pkt, addr, now, "bad_request")
        elif group in self.groups:
            self._event(now, ev.GroupExisted, record.name, group)
            self._reply(pkt, addr, now, "group_exists")
        elif len(self.groups) >= self.limits.max_groups:
            self._event(now, ev.GroupsFull, record.name, group)
            self._reply(pkt, addr, now, "too_many_groups")
        elif not self._groups_held.allows(addr[0], self.limits.max_groups_per_ip):
            self._event(now, ev.GroupQuotaReached, record.name, group, addr[0])
            self._reply(pkt, addr, now, "quota")
        else:
            self._groups_held.move(addr[0])
            self.groups[group] = {}
            self._next_seq[group] = 1
            self._creators[group] = addr[0]
            self._kept.group(group, addr[0], 1)
            self._event(now, ev.GroupCreated, record.name, group)
            self._show_groups(now)
            self._reply(pkt, addr, now, "ok")

    def _on_list_groups(self, pkt, addr, now, record: ClientRecord) -> None:
        groups = list(self.groups)
        self._event(now, ev.GroupsListed, record.name, groups, items=groups)
        self._reply_list(pkt, addr, now, groups, 0)

    def _on_join_group(self, pkt, addr, now, record: ClientRecord) -> None:
        group = pkt.payload.group
        if group not in self.groups:
            self._event(now, ev.GroupNotFound, record.name, group)
            self._reply(pkt, addr, now, "no_such_group")
            return
        if record.group != group:
            self._leave_group(record)
            self.groups[group][record.name] = None
            record.group = group
            self._kept.member(group, record.name, self._next_seq[group])
        self._event(now, ev.GroupJoined, record.name, group)
        self._show_groups(now)
        self._reply(pkt, addr, now, "ok", seq=self._next_seq[group])  # the first message it receives

    def _on_leave_group(self, pkt, addr, now, record: ClientRecord) -> None:
        if record.group is None or record.group != pkt.payload.group:
            self._reply(pkt, addr, now, "not_in_group")
            return
        self._leave_group(record)
        self._event(now, ev.GroupLeft, record.name, pkt.payload.group)
        self._show_groups(now)
        self._reply(pkt, addr, now, "ok")

    def _on_list_members(self, pkt, addr, now, record: ClientRecord) -> None:
        group = pkt.payload.group
        if record.group != group:
            self._reply(pkt, addr, now, "not_in_group")
            return
        members = list(self.groups[group])
        self._event(now, ev.MembersListed, record.name, group, members, items=members)
        self._reply_list(pkt, addr, now, members, 0)

    def _on_list_more(self, pkt, addr, now, record: ClientRecord) -> None:
        """The rest of a list that did not fit one answer (printed once, when it was asked for)."""
        more = pkt.payload
        if MSG_TYPES[more.list] == "list_groups":
            self._reply_list(pkt, addr, now, list(self.groups), more.start)
        elif record.group == more.group:
            self._reply_list(pkt, addr, now, list(self.groups[more.group]), more.start)
        else:
            self._reply(pkt, addr, now, "not_in_group")

    def _on_send_group(self, pkt, addr, now, record: ClientRecord) -> None:
        group, text = pkt.payload.group, pkt.payload.text
        if text_too_long(text):  # a well-behaved client refuses it before sending
            self._reply(pkt, addr, now, "bad_request")
            return
        if record.group != group:
            self._reply(pkt, addr, now, "not_in_group")
            return
        self._event(now, ev.GroupMessageRelayed, record.name, group, text)
        seq = self._next_seq[group]
        self._next_seq[group] = next_seq(seq)
        if self._keeping:
            self._kept.group(group, self._creators[group], self._next_seq[group])
        self._reply(pkt, addr, now, "ok", seq=seq)  # the sender passes its own number without waiting
        self._send_group_message(group, seq, record.name, text, now)

    def _on_kick(self, pkt, addr, now, record: ClientRecord) -> None:
        target = self.clients.get(pkt.payload.target)
        if target is None:
            self._reply(pkt, addr, now, "no_such_user")
            return
        self._reply(pkt, addr, now, "ok")
        if target.online:
            self._probe(target, now)

    # -- server-initiated exchanges ------------------------------------------

    def _send_group_message(self, group: str, seq: int, origin: str, text: str, now: float,
                            again: tuple[int, tuple[str, ...]] | None = None) -> None:
        """One encoding for every other member, each copy carrying that member's token (which its
        ack echoes, and without which it refuses the copy); each acks it, or leaves the group.
        With a state store it is journaled until every member has acked it (or left).  ``again``:
        (msg id, names) of a journaled message sent again by a restarted server, with its id."""
        clients, members = self.clients, self.groups[group]
        names = members if again is None else [name for name in again[1] if name in members]
        tokens = {clients[name].addr: clients[name].token for name in names if name != origin}
        if not tokens:
            return

        def unresponsive(addr: Address, now: float) -> None:
            member = self.clients.get(self.by_addr.get(addr))
            # only the session it was sent to (its token), not another that holds the address now
            if member is not None and member.token == tokens[addr] and member.group == group:
                self._leave_group(member)
                self._event(now, ev.MemberRemoved, member.name, group)
                self._show_groups(now)
            self._kept.settled(pkt.msg_id)

        net = self.net
        if again is None:
            pkt = net.build("grp_msg", group=group, seq=seq, origin=origin, text=text)
        else:
            pkt = net.build_as(again[0], "grp_msg", net.token, {"group": group, "seq": seq, "origin": origin, "text": text})
        if not self._keeping:
            net.request_each(pkt, tokens, now, on_fail=unresponsive)
            return
        net.request_each(pkt, tokens, now, on_fail=unresponsive, on_each=self._kept.on_ack)
        names = {clients[name].addr: name for name in names if name != origin}
        self._kept.journal(pkt.msg_id, Journaled(group, seq, origin, text, names))

    def _watch(self, record: ClientRecord, when: float) -> None:
        """Check ``record``'s session for silence at ``when``.  Traffic only sets its ``heard``
        time: the check, one alarm per client per ``idle_probe`` seconds, finds out then
        whether the session was quiet that long (and if not, looks again when it would be)."""

        def check(now: float) -> None:
            if not record.online or self.clients.get(record.name) is not record:
                return  # offline or replaced: the watch ends with the session
            quiet_until = record.heard + self._idle_probe
            if quiet_until > now:
                self._watch(record, quiet_until)
                return
            self._probe(record, now)  # no answer: marked offline, and the next check ends the watch
            self._watch(record, now + self._idle_probe)

        self.net.call_at(when, check)

    def _probe(self, target: ClientRecord, now: float, then: ProbeEnd | None = None, tries: int | None = None) -> None:
        """A kick is only a report, silence may be only a quiet user, and a claim of a name is
        not proof that its owner is gone: believe any of them if the client ignores the
        server's probe too.  One probe per session at a time (by token: an old session of the
        name may still be probed): ``then(answered, now)`` is called when the one under way
        ends, with ``tries`` for a new one (fewer than the policy's)."""
        waiting = self._probing.get(target.token)
        if waiting is not None:
            if then is not None:
                waiting.append(then)
            return
        waiting = self._probing[target.token] = [then] if then is not None else []

        def ended(answered: bool, now: float) -> None:
            del self._probing[target.token]
            if not answered and target.online and self.clients.get(target.name) is target:
                self._event(now, ev.ClientMarkedOffline, target.name)
                self._go_offline(target, now)
                self._sync.tell(target, now)  # tell it too, in case only its answers were lost
            for then in waiting:
                then(answered, now)

        probe = self.net.build("probe", target.token)
        self.net.request(probe, target.addr, now, lambda ack, now: ended(True, now), lambda now: ended(False, now), tries)

    # -- state changes ------------------------------------------------------------

    def _print_table(self) -> None:
        self._emit(ev.ClientTableChanged(ev.LazyRows(self.client_rows)))

    def _go_offline(self, record: ClientRecord, now: float) -> None:
        record.online = False
        self.by_addr.pop(record.addr, None)
        self._sync.stop(record)
        if record.group is not None:
            self._leave_group(record)
            self._show_groups(now)
        self._sync.changed(record)
        self._kept.client(record)

    def _leave_group(self, record: ClientRecord) -> None:
        if record.group is not None:
            self.groups[record.group].pop(record.name, None)
            self._kept.member(record.group, record.name, None)
            record.group = None

    # -- helpers --------------------------------------------------------------------

    def _authenticate(self, pkt: Fields, addr: Address, now: float) -> ClientRecord | None:
        """The session a request belongs to, or None (then the request was answered or dropped).

        Name, token and source address must all match an online client, and the request must
        be newer than the last one of the session (older ones are replays: a genuine
        retransmission was answered from the remembered replies already)."""
        record = self.clients.get(pkt.sender)
        kind = MSG_TYPES[pkt.type]
        if record is None or not record.online or record.addr != addr:
            # No session of that name at that address (an old session, a restarted server,
            # or someone using another's name): say so, a genuine client can tell its user.
            self._drop("unregistered", addr, kind, pkt.sender)
            self._reply(pkt, addr, now, "not_registered")
        elif record.token != pkt.token:
            # The right address with the wrong token: a forged source address.  An answer
            # would go to the real client, so there is none.
            self._drop("forged", addr, kind, pkt.sender)
        elif not is_newer(pkt.msg_id, record.last_id):
            self._drop("replayed", addr, kind, pkt.sender, pkt.msg_id)
        else:
            return record
        return None

    def _reply(self, pkt: Fields, addr: Address, now: float, status: str, items: list[bytes] = (), seq: int = 0) -> None:
        answer = self.net.build_answer(pkt, status=STATUS_CODES[status], seq=seq, items=items)
        self.net.answer(pkt, addr, answer, now)
        if self._keeping:
            record = self.clients.get(pkt.sender)
            if record is not None and record.token == pkt.token:  # the session's own request, not a forgery
                self._kept.answer(record.name, pkt.msg_id, answer.data)

    def _reply_list(self, pkt: Fields, addr: Address, now: float, items: list[str], start: int) -> None:
        """Answer with the items from ``start`` on: all of them, or as many as fit one datagram with
        status ``more`` (the client asks ``list_more`` for the rest)."""
        part, more = page(items, start)
        self._reply(pkt, addr, now, "more" if more else "ok", part)

    def _drop(self, reason: str, addr: Address, message: str = "", sender: str = "", msg_id: int = 0,
              detail: object = "") -> None:
        """Count a bad datagram; report only the first of each kind, so a flood cannot flood the log
        (or cost more than the count: ``detail``, the decoder's error, say, is made a string then)."""
        self.drops[reason] += 1
        if self.drops[reason] == 1:
            self._emit(ev.DatagramDropped(reason, addr, message, sender, msg_id, str(detail)))

    def _show_groups(self, now: float) -> None:
        if not self._groups_shown:  # once per batch: its rows are made after the batch, the latest
            self._groups_shown = True
            self._group_printer.changed(now)

    def _print_groups(self) -> None:
        groups = self.groups

        def rows() -> tuple[tuple[str, tuple[str, ...]], ...]:
            return tuple((group, tuple(members)) for group, members in groups.items())

        self._emit(ev.GroupTableChanged(ev.LazyRows(rows)))

    def client_rows(self) -> tuple[tuple[str, str, int, bool], ...]:
        return tuple((c.name, c.addr[0], c.addr[1], c.online) for c in self.clients.values())
