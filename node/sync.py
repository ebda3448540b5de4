"""The server's side of the client table: every online client's copy is kept up to date.

Each change to the table gets the next version (``node/tables.py``); each client has
acknowledged some version, and is sent the rows changed since, one datagram's worth at a
time, until it has them all.  Per client that is a small state machine (``SyncState``):

    IDLE --change--> DUE --round--> IN_FLIGHT --ack--> IDLE, or DUE if more changed meanwhile
                                        |
                                        +--no ack--> BACKING_OFF --pause--> IN_FLIGHT
                                                          |
                                                          +--change--> DUE

and OFF for a client that is offline or whose session was replaced.  The parts go out in
rounds, when the shell drains the logic: the changes of a burst of datagrams become one part
per client, at most ``window`` parts in flight at once, the others waiting their turn.
A client that missed a part is also repaired when it next sends a request.  The table is
printed (``TablePrinter``) at most once a round, within its budget.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from typing import Callable, Protocol

from proto import STATUS_CODES
from proto.fastpath import Fields

from .effects import Address
from .reliable import Endpoint
from .tables import TablePrinter, TableVersions, entry

STATUS_OK = STATUS_CODES["ok"]
MAX_SYNC_PAUSE = 30.0  # seconds between table-update rounds to a client that stopped answering
# Table parts in flight at once, all clients together: after a change, thousands of clients
# are due one each, and sending them all at once would be a burst (12 MB for 10,000) that
# overflows buffers and comes back as retransmissions.  The others wait their turn.
TABLE_WINDOW = 256


class SyncState(Enum):
    IDLE = "idle"  # up to date, or nothing to send until the next change
    DUE = "due"  # to be sent a part at the next round, in turn
    IN_FLIGHT = "in flight"  # a part is on its way; the next goes when it is acknowledged
    BACKING_OFF = "backing off"  # a part went unanswered: tried again after a pause, or at the next change
    OFF = "off"  # offline, or its session replaced: not updated


IDLE, DUE, IN_FLIGHT, BACKING_OFF, OFF = SyncState


class Synced(Protocol):
    """What the synchronisation reads and keeps of a client (the server's client record)."""

    name: str
    addr: Address
    token: int
    session: int
    online: bool
    changed: int  # the table version in which its row last changed
    row: bytes  # its row as it goes on the wire
    synced: int  # the table version it has acknowledged
    sync: SyncState
    table_msg: int | None  # msg_id of the part in flight to it
    sync_pause: float  # wait before trying again after a part went unanswered


class TableSync:
    """``clients`` is the server's client table (name -> record), read, never changed here;
    ``show()`` prints the table; ``net`` sends the parts."""

    def __init__(self, net: Endpoint, clients: dict[str, Synced], show: Callable[[], None],
                 window: int = TABLE_WINDOW, max_pause: float = MAX_SYNC_PAUSE):
        self._net = net
        self._clients = clients
        self._versions = TableVersions(clients)
        self._window = window
        self._max_pause = max_pause
        self._idle: dict[str, Synced] = {}  # IDLE and BACKING_OFF: made DUE by the next change
        self._due: OrderedDict[str, Synced] = OrderedDict()  # DUE, in turn
        self.in_flight = 0  # clients IN_FLIGHT (at most ``window`` of them, but for repairs and last words)
        self._changed = False  # the table changed since the last round
        self._printer = TablePrinter(net.call_at, lambda: len(clients), show)

    @property
    def version(self) -> int:
        """The client table's version: how many changes it has seen."""
        return self._versions.version

    # -- what the server tells it -------------------------------------------------------

    def restore(self, version: int) -> None:
        """A restarted server's table: the client records hold their rows' ``changed`` versions as
        they were, and the table was at ``version``.  Every online client is taken to hold it: a
        client that had missed a part is found out by ``check`` (it answers ``resync``)."""
        self._versions.restore(version)
        self._changed = True  # printed at the first round, as the server starts
        for record in self._clients.values():
            record.row = entry(record.name, record.addr, record.online, record.session)
            if record.online:
                record.synced = version
                self._set(record, IDLE)

    def check(self, record: Synced, now: float) -> None:
        """Send ``record`` an empty part at the current version: a client that holds it only acks,
        one that is behind answers ``resync`` and gets the whole table."""
        self._send(record, now)

    def changed(self, record: Synced) -> None:
        """``record``'s row changed (a session started, or it went offline)."""
        record.row = entry(record.name, record.addr, record.online, record.session)
        self._versions.change(record)
        self._changed = True  # parts go out, and the table is printed, at the next round

    def start(self, record: Synced, replaced: Synced | None = None) -> None:
        """A new session, in place of ``replaced`` if the name had one: its row, and it is due."""
        if replaced is not None:
            self._set(replaced, OFF)
        self._set(record, DUE)
        self.changed(record)

    def stop(self, record: Synced) -> None:
        """``record`` went offline: no more parts (a part in flight is cancelled)."""
        self._set(record, OFF)

    def contact(self, record: Synced, now: float) -> None:
        """A request from ``record``: a client that missed a part is repaired at once."""
        if record.sync is not IN_FLIGHT and record.synced < self._versions.version:
            self._send(record, now)

    def tell(self, record: Synced, now: float) -> None:
        """Send ``record`` a part now, online or not (the last word to a client marked offline)."""
        self._send(record, now)

    def round(self, now: float) -> None:
        """At each drain: the changes since the last round make every IDLE (or BACKING_OFF) client
        DUE, and the DUE ones are sent a part each, in turn, while the window has room."""
        if self._changed:
            self._changed = False
            for record in self._idle.values():
                record.sync = DUE
            self._due.update(self._idle)
            self._idle.clear()
            self._printer.changed(now)
        due, version = self._due, self._versions.version
        while due and self.in_flight < self._window:
            _, record = due.popitem(last=False)
            record.sync = OFF  # out of the queue; what follows puts it where it belongs
            if record.synced < version:
                self._send(record, now)
            else:
                self._set(record, IDLE)

    # -- the parts ---------------------------------------------------------------------

    def _send(self, record: Synced, now: float) -> None:
        """Send ``record`` the first datagram's worth of the rows changed since the version it
        acknowledged (a part in flight is superseded: the new one covers it)."""
        self._set(record, IN_FLIGHT)
        base = record.synced
        version, rows = self._versions.delta(base)
        pkt = self._net.build("table", record.token, version=version, base=base, entries=rows)

        def acked(ack: Fields, now: float) -> None:
            record.table_msg = None
            record.sync_pause = 0.0
            if ack.payload.status == STATUS_OK:
                record.synced = max(record.synced, version)
            else:  # resync: its copy is not what we thought; send everything
                record.synced = 0
            if self._current(record):
                # the next part, or what changed meanwhile, goes at the round; else it waits for a change
                self._set(record, DUE if record.synced < self._versions.version else IDLE)
            else:
                self._set(record, OFF)

        def failed(now: float) -> None:
            # Keep trying, ever more slowly, while the client counts as online: a client
            # that only listens would otherwise keep a stale table for good.
            record.table_msg = None
            if not self._current(record):
                self._set(record, OFF)
                return
            record.sync_pause = min(self._max_pause, 2 * record.sync_pause or self._net.policy.window)
            self._set(record, BACKING_OFF)  # the next change reaches it sooner than the retry
            self._net.call_at(now + record.sync_pause, retry)

        def retry(now: float) -> None:
            if record.sync is BACKING_OFF:
                if record.synced < self._versions.version:
                    self._send(record, now)
                else:
                    self._set(record, IDLE)

        record.table_msg = self._net.request(pkt, record.addr, now, acked, failed)

    def _current(self, record: Synced) -> bool:
        return record.online and self._clients.get(record.name) is record

    def _set(self, record: Synced, state: SyncState) -> None:
        """Move ``record`` to ``state``, keeping the queues and the count in flight in step with it."""
        old, name = record.sync, record.name
        if old is IN_FLIGHT:
            self.in_flight -= 1
            if record.table_msg is not None:
                self._net.cancel(record.table_msg)
                record.table_msg = None
        elif old is DUE:
            if self._due.get(name) is record:
                del self._due[name]
        elif old is not OFF:  # IDLE, BACKING_OFF
            if self._idle.get(name) is record:
                del self._idle[name]
        record.sync = state
        if state is IN_FLIGHT:
            self.in_flight += 1
        elif state is DUE:
            self._due[name] = record
        elif state is not OFF:
            self._idle[name] = record
