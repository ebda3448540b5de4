"""At-least-once delivery and exactly-once processing, shared by server and client.

``Endpoint`` numbers outgoing messages, retransmits requests until the matching
ack arrives (or gives up after the configured tries), and remembers the answer
it gave to each request so that a retransmitted request is answered again but
processed only once.  A stream of messages from one sender (the server's group
messages) may be acknowledged several at a time (``acknowledge``).  Like the rest
of ``node``, it does no I/O: it collects effects and is driven with the current time.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

from proto import MESSAGES, STATUS_CODES, TOKEN_AT, TOKEN_END, TYPE_CODES
from proto.fastpath import Fields, encode
from proto.fields import HEADER

from .effects import Address, Effect, Send

AckHandler = Callable[[Fields, float], None]
FailHandler = Callable[[float], None]
EachFailHandler = Callable[[Address, float], None]
STATUS_OK = STATUS_CODES["ok"]
ACK_DELAY = 0.005  # seconds an ack may wait to go with others; see RetryPolicy.ack_delay
ACK_BATCH = 16  # message ids one ack answers at most (Ack.also holds up to 255)
ACK = TYPE_CODES["ack"]
TOKEN_BITS = HEADER.field("token").bits  # a token or nonce fills its header field
ANSWER_TYPES = {m.name: TYPE_CODES[m.answer] for m in MESSAGES if m.answer}  # the type of answer each request takes
ANSWERED_WITH = {m.code: m.answer for m in MESSAGES if m.answer}  # the same, by the request's type code


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 0.5  # seconds between tries
    tries: int = 5  # tries in all, the first one included

    @property
    def window(self) -> float:
        """How long after the first try a retransmission can still be sent."""
        return self.timeout * self.tries

    @property
    def ack_delay(self) -> float:
        """How long an ack may wait to go with others (``Endpoint.acknowledge``): a small part
        of the time the sender waits before retransmitting."""
        return min(ACK_DELAY, self.timeout / 10)


# Answers to requests are remembered this many retry windows, so a late
# retransmission (delayed by the network) is still recognised.
REPLY_MEMORY_WINDOWS = 4
MAX_REMEMBERED_REPLIES = 65536
ID_BLOCK = 1 << 16  # message ids reserved at a time by a server that keeps its state (``reserve_ids``)


# What one message id of an ack did (``Endpoint._acked``); or-ed over the ids of one ack.
_UNKNOWN, _ANSWERED, _WRONG, _FORGED = 0, 1, 2, 4
_TOKEN_BYTES = TOKEN_END - TOKEN_AT


def is_newer(msg_id: int, than: int) -> bool:
    """Serial-number order of 32-bit message ids (RFC 1982), so ids may wrap around."""
    return 0 < (msg_id - than) % 2**32 < 2**31


class Outgoing(NamedTuple):  # a named tuple: one is made for every datagram sent
    msg_id: int
    data: bytes
    kind: str  # the message type, by name
    token: int  # the header's token: the answer must echo it


@dataclass(slots=True)
class _Pending:
    data: bytes  # the datagram; if ``tail`` is set, only its header up to the token field
    tail: bytes | None  # the rest after the token field, when each receiver's token is written in
    # The receivers that have not acknowledged it yet, each with the header token it was sent
    # with: an answer must echo it, so a blind spoofer cannot answer in a receiver's name.
    waiting: dict[Address, int]
    tries_left: int
    due: float
    on_ack: AckHandler | None  # called once every receiver has acknowledged
    on_fail: EachFailHandler  # called for each receiver that never did
    answer: int  # the type of answer it takes (ANSWER_TYPES); another type is never handed to on_ack
    on_each: Callable[[int], None] | None = None  # called with its msg id as each receiver acknowledges


class _Acks:
    """What ``Endpoint.acknowledge`` did for one sender: the message ids it acknowledged, to
    recognise retransmissions, and the acks waiting to go together.

    Each id is remembered at least ``memory`` seconds (at most twice that) in two generations
    of plain sets, the older dropped whole: cheaper than an entry per id with its own expiry,
    like the remembered replies, when a busy group brings thousands of ids a second."""

    __slots__ = ("memory", "generation", "since", "current", "previous", "waiting", "sent_at", "batch", "token", "floor")

    def __init__(self, memory: float, now: float, remembered: int):
        self.memory = memory
        self.generation = remembered // 2  # ids one generation holds at most
        self.since = now  # when ``current`` was started: its ids were added within ``memory`` after
        self.current: set[int] = set()
        self.previous: set[int] = set()
        self.waiting: list[int] = []  # acknowledged, the ack not sent yet
        self.sent_at: float | None = None  # when the last ack went
        # Acks sent so far: a wait knows its own batch is still waiting only if none went since
        # it began (the time cannot tell: several acks may go at the same instant of a batch).
        self.batch = 0
        self.token = 0  # the header token of the requests waiting: their ack echoes it
        # The newest id forgotten at least ``memory`` after it came: its retransmissions (and those
        # of every older id, since the sender's ids grow) are long over, so one now is a replay.
        self.floor: int | None = None

    def age(self, now: float) -> None:
        """Start a new generation when the current one is ``memory`` old (or full)."""
        old = now - self.since >= self.memory
        if old or len(self.current) >= self.generation:
            young = now - self.since < 2 * self.memory  # some of ``current`` are still to be kept
            if old:  # what is forgotten now came a memory ago or more (not so when full)
                self._raise_floor(self.previous if young else self.previous | self.current)
            self.previous, self.current, self.since = self.current if young else set(), set(), now

    def _raise_floor(self, forgotten: set[int]) -> None:
        floor = self.floor
        for msg_id in forgotten:  # once a memory: cheap per id
            if floor is None or is_newer(msg_id, floor):
                floor = msg_id
        self.floor = floor

    def add(self, msg_id: int, now: float) -> None:
        self.age(now)
        self.current.add(msg_id)
        self.waiting.append(msg_id)

    def seen(self, msg_id: int) -> bool:
        return msg_id in self.current or msg_id in self.previous

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


class Endpoint:
    def __init__(self, name: str, port: int, policy: RetryPolicy, rng: random.Random,
                 max_replies: int = MAX_REMEMBERED_REPLIES):
        """``max_replies`` bounds the answers remembered, and the message ids acknowledged per sender."""
        self.name = name
        self.port = port
        self.token = 0
        self.policy = policy
        self.effects: list[Effect] = []
        self.drops: Counter[str] = Counter()  # answers that answered nothing, by kind; the node's own count
        self._rng = rng
        self._next_id = rng.randrange(1, 2**32)
        self._pending: dict[int, _Pending] = {}
        self._timers: list[tuple[float, int]] = []  # (due, msg_id); stale rows skipped lazily
        # An OrderedDict, not a dict: taking the oldest entry off a dict again and again
        # makes finding the next oldest slower each time (the emptied slots stay in front).
        self._replies: OrderedDict[tuple[Address, int], tuple[float, Send]] = OrderedDict()
        self._max_replies = max_replies
        self._memory = REPLY_MEMORY_WINDOWS * policy.window  # how long answers are remembered
        self._acks: dict[Address, _Acks] = {}  # see ``acknowledge``; the server's address only, in a client
        self._ack_delay = policy.ack_delay
        self._alarms: list[tuple[float, int, FailHandler]] = []  # (when, seq, callback)
        self._alarm_seq = 0
        self._id_limit: int | None = None  # see ``reserve_ids``
        self._reserve: Callable[[int], None] | None = None

    # -- outgoing ---------------------------------------------------------

    def build(self, type_name: str, token: int | None = None, /, **payload) -> Outgoing:
        """A datagram from this endpoint with a fresh message id; ``payload`` fields by name.

        The header carries ``token`` (positional: a reg_ack's payload has a field of that name),
        by default the session token (``self.token``): to a peer, a ``nonce()`` instead, which
        its answer echoes (peers never see the token)."""
        return self._encode(type_name, self.token if token is None else token, payload)

    def build_answer(self, request: Fields, **payload) -> Outgoing:
        """The answer to ``request``, of the type that answers it (proto/messages.py): it names the
        request's message id and echoes its header token, the proof that whoever answers received
        the request (a blind spoofer did not)."""
        payload["ack_id"] = request.msg_id
        return self._encode(ANSWERED_WITH[request.type], request.token, payload)

    def _encode(self, type_name: str, token: int, payload: dict) -> Outgoing:
        msg_id = self._next_id
        if msg_id == self._id_limit:
            self._reserve_ids()
        self._next_id = msg_id % (2**32 - 1) + 1  # 1 .. 2**32-1, never 0
        header = {"msg_id": msg_id, "port": self.port, "token": token, "sender": self.name}
        return Outgoing(msg_id, encode(type_name, header, payload), type_name, token)

    def build_as(self, msg_id: int, type_name: str, token: int, payload: dict) -> Outgoing:
        """A datagram with message id ``msg_id``: one sent before (by a server before it restarted),
        sent again as it was, so that a receiver that has it already recognises it."""
        header = {"msg_id": msg_id, "port": self.port, "token": token, "sender": self.name}
        return Outgoing(msg_id, encode(type_name, header, payload), type_name, token)

    def reserve_ids(self, start: int | None, reserve: Callable[[int], None]) -> None:
        """Take message ids from ``start`` on (None: where they are), in blocks: ``reserve(limit)``
        is called before an id of a new block is used, with the first id past it, and must make
        that limit durable.  A server that restarts from there never reuses an id a client has
        seen, and its ids stay newer than those (a client refuses an old id as a replay)."""
        if start is not None:
            self._next_id = start
        self._reserve = reserve
        self._id_limit = self._next_id
        self._reserve_ids()

    def _reserve_ids(self) -> None:
        self._id_limit = (self._next_id + ID_BLOCK - 1) % (2**32 - 1) + 1
        self._reserve(self._id_limit)

    def nonce(self) -> int:
        """A fresh 64-bit secret for the header token of a request that has no session token to
        carry (a ``reg``, a private message to a peer); never 0, the token of nothing."""
        return self._rng.getrandbits(TOKEN_BITS) or 1

    def request(self, out: Outgoing, addr: Address, now: float, on_ack: AckHandler, on_fail: FailHandler,
                tries: int | None = None) -> int:
        """Send ``out`` and retransmit it until acked (the ack echoing its token); returns its message id.
        ``tries``: fewer than the policy's, for an answer that must come sooner."""
        return self._track(out.data, None, {addr: out.token}, out, now, on_ack, lambda addr, now: on_fail(now), tries)

    def request_each(self, out: Outgoing, tokens: dict[Address, int], now: float, on_fail: EachFailHandler,
                     on_each: Callable[[int], None] | None = None) -> int:
        """Send ``out`` to every address of ``tokens`` with that receiver's token written into its
        header, and retransmit it to each until that one acks (echoing its token).

        One encoding, one message id and one retransmission timer for all of them (a group
        message to its members): encoding and tracking it once per receiver was most of the
        server's work per group message.  ``on_fail(addr, now)`` for each that never acks;
        ``on_each(msg_id)`` as each one acks (for a server that journals who still waits)."""
        data = out.data
        return self._track(data[:TOKEN_AT], data[TOKEN_END:], dict(tokens), out, now, None, on_fail, None, on_each)

    def _track(self, data, tail, waiting, out: Outgoing, now: float, on_ack, on_fail, tries: int | None = None,
               on_each: Callable[[int], None] | None = None) -> int:
        due = now + self.policy.timeout
        answer = ANSWER_TYPES.get(out.kind, ACK)
        pending = _Pending(data, tail, waiting, (tries or self.policy.tries) - 1, due, on_ack, on_fail, answer, on_each)
        self._send(pending)
        self._pending[out.msg_id] = pending
        heapq.heappush(self._timers, (due, out.msg_id))
        return out.msg_id

    def _send(self, pending: _Pending) -> None:
        """(Re)send ``pending`` to each receiver still waiting, stamped with its token if need be."""
        data, tail, effects = pending.data, pending.tail, self.effects
        if tail is None:
            for addr in pending.waiting:
                effects.append(Send(data, addr))
        else:
            for addr, token in pending.waiting.items():
                effects.append(Send(data + token.to_bytes(_TOKEN_BYTES, "big") + tail, addr))

    def forget(self, addr: Address) -> None:
        """A new session with ``addr`` (a restarted server): forget the ids acknowledged from it
        and its replay floor (see ``answer_again``), since its new ids start at a random point."""
        acks = self._acks.pop(addr, None)
        if acks is not None:
            acks.waiting.clear()  # an ack due for the old session's requests has nobody to go to

    def cancel(self, msg_id: int) -> None:
        self._pending.pop(msg_id, None)

    def cancel_all(self) -> None:
        self._pending.clear()
        for acks in self._acks.values():
            acks.waiting.clear()
        self._timers.clear()
        self._alarms.clear()

    def handle_ack(self, ack: Fields, addr: Address, now: float) -> bool:
        """Match an ack or reg_ack to the requests it answers; False if it answers nothing pending.

        What answers nothing is counted in ``drops``: a ``stale ack`` (late or duplicate, normal
        under loss), a ``forged ack``, one whose token is not the one its request carried (it
        never reached a callback), or a ``wrong answer``, one of the other type than its request
        takes."""
        payload = ack.payload
        outcome = self._acked(payload.ack_id, ack, addr, now)
        for more in getattr(payload, "also", ()):  # a reg_ack answers one request only
            outcome |= self._acked(more.id, ack, addr, now)
        if outcome & _ANSWERED:
            return True
        self.drops["forged ack" if outcome & _FORGED else "wrong answer" if outcome else "stale ack"] += 1
        return False

    def _acked(self, msg_id: int, ack: Fields, addr: Address, now: float) -> int:
        pending = self._pending.get(msg_id)
        if pending is None:
            return _UNKNOWN
        token = pending.waiting.get(addr)
        if token is None:
            return _UNKNOWN
        if ack.token != token:
            return _FORGED  # not from whoever received the request; the request stays
        if ack.type != pending.answer:
            return _WRONG  # its fields are not the ones the request's handler reads; the request stays
        del pending.waiting[addr]
        if pending.on_each is not None:
            pending.on_each(msg_id)
        if not pending.waiting:
            del self._pending[msg_id]
            if pending.on_ack is not None:
                pending.on_ack(ack, now)
        return _ANSWERED

    # -- incoming requests ------------------------------------------------

    def answer_again(self, request: Fields, addr: Address, now: float) -> bool:
        """If ``request`` was already answered, send the same answer again and return True.

        True too, with nothing sent, for a request from a sender acknowledged with
        ``acknowledge`` (the server, in a client) that is older than ids forgotten long ago:
        a replay (counted ``replayed``)."""
        self._forget_old_replies(now)
        remembered = self._replies.get((addr, request.msg_id))
        if remembered is not None:
            self.effects.append(remembered[1])
            return True
        acks = self._acks.get(addr)
        if acks is None:
            return False
        msg_id = request.msg_id
        if not acks.seen(msg_id):
            if acks.floor is None or is_newer(msg_id, acks.floor):
                return False
            self.drops["replayed"] += 1  # its sender's ids grow: one this old is a copy sent again
            return True
        if msg_id not in acks.waiting:
            acks.waiting.append(msg_id)  # its ack was lost: no waiting this time
        self._send_acks(addr, acks, now)
        return True

    def answer(self, request: Fields, addr: Address, reply: Outgoing, now: float) -> None:
        """Send ``reply`` to ``request`` and remember it for retransmissions of the request."""
        send = Send(reply.data, addr)
        self.effects.append(send)
        if len(self._replies) >= self._max_replies:
            self._replies.popitem(last=False)
        self._replies[(addr, request.msg_id)] = (now + self._memory, send)

    def remember(self, addr: Address, msg_id: int, data: bytes, now: float) -> None:
        """Answer request ``msg_id`` from ``addr`` with ``data`` if it comes again (an answer
        given before the server restarted; ``answer`` remembers the others)."""
        if len(self._replies) >= self._max_replies:
            self._replies.popitem(last=False)
        self._replies[(addr, msg_id)] = (now + self._memory, Send(data, addr))

    def acknowledge(self, request: Fields, addr: Address, now: float) -> None:
        """Acknowledge ``request`` (status ok), if need be together with the requests that follow
        it from the same address: one ack datagram for several messages of a busy stream.

        The ack goes at once when none went to ``addr`` in the last ``policy.ack_delay``;
        otherwise it waits until that much time has passed since the last one, or until
        ACK_BATCH wait.  The ack echoes the requests' header token (the receiver's own, for the
        server's group messages): requests with another token do not share an ack."""
        acks = self._acks.get(addr)
        if acks is None:
            acks = self._acks[addr] = _Acks(self._memory, now, self._max_replies)
        if request.token != acks.token:
            self._send_acks(addr, acks, now)  # those waiting go with their own token
            acks.token = request.token
        acks.add(request.msg_id, now)
        last = acks.sent_at
        if len(acks.waiting) >= ACK_BATCH or last is None or now >= last + self._ack_delay:
            self._send_acks(addr, acks, now)
        elif len(acks.waiting) == 1:
            batch = acks.batch

            def due(now: float) -> None:
                if acks.batch == batch:  # else its batch went meanwhile (full, or with a retransmission's ack)
                    self._send_acks(addr, acks, now)

            self.call_at(last + self._ack_delay, due)

    def _send_acks(self, addr: Address, acks: _Acks, now: float) -> None:
        if not acks.waiting:
            return  # nothing to acknowledge (cancel_all emptied it); an ack of nothing cannot be encoded
        first, *also = acks.waiting
        acks.waiting = []
        acks.sent_at = now
        acks.batch += 1
        ack = self.build("ack", acks.token, ack_id=first, status=STATUS_OK, also=[{"id": msg_id} for msg_id in also])
        self.effects.append(Send(ack.data, addr))

    def _forget_old_replies(self, now: float) -> None:
        # Insertion order is expiry order: every entry lives equally long.
        replies = self._replies
        while replies:
            expires, _ = replies[next(iter(replies))]
            if expires > now:
                break
            replies.popitem(last=False)
        for acks in self._acks.values():
            acks.age(now)

    # -- time ---------------------------------------------------------------

    def call_at(self, when: float, callback: FailHandler) -> None:
        """Call ``callback(now)`` from ``handle_timer`` once ``when`` has come."""
        self._alarm_seq += 1
        heapq.heappush(self._alarms, (when, self._alarm_seq, callback))

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        retry = self._next_retry()
        if not self._alarms:
            return retry
        alarm = self._alarms[0][0]
        return alarm if retry is None or alarm < retry else retry

    def _next_retry(self) -> float | None:
        while self._timers:
            due, msg_id = self._timers[0]
            pending = self._pending.get(msg_id)
            if pending is not None and pending.due == due:
                return due
            heapq.heappop(self._timers)
        return None

    def handle_timer(self, now: float) -> None:
        """Retransmit what is due, give up on requests out of tries, run due alarms."""
        self._forget_old_replies(now)
        while self._alarms and self._alarms[0][0] <= now:
            heapq.heappop(self._alarms)[2](now)
        while (due := self._next_retry()) is not None and due <= now:
            _, msg_id = heapq.heappop(self._timers)
            pending = self._pending[msg_id]
            if pending.tries_left == 0:
                del self._pending[msg_id]
                for addr in pending.waiting:
                    pending.on_fail(addr, now)
                continue
            pending.tries_left -= 1
            pending.due = due + self.policy.timeout
            heapq.heappush(self._timers, (pending.due, msg_id))
            self._send(pending)

    def drain(self) -> list[Effect]:
        effects, self.effects = self.effects, []
        return effects

    def waiting(self, msg_id: int) -> dict[Address, int] | None:
        """The receivers of request ``msg_id`` that have not acknowledged it, or None once it is over."""
        pending = self._pending.get(msg_id)
        return None if pending is None else pending.waiting

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def awaited(self) -> set[Address]:
        """The addresses that still owe an ack."""
        return {addr for pending in self._pending.values() for addr in pending.waiting}

    @property
    def acks_waiting(self) -> int:
        """Acknowledged messages whose ack has not gone yet (``acknowledge``)."""
        return sum(len(acks.waiting) for acks in self._acks.values())

    @property
    def remembered_count(self) -> int:
        return len(self._replies) + sum(map(len, self._acks.values()))
