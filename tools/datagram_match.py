"""Match keys on what every UDP datagram has, chat or not: its addresses, size and bytes,
and the fields of the layer that decoded it (the chat layer, or the proxy's --layer).

Pure functions, no I/O: ``parse_key`` turns one ``key=value`` word of a rule into a test of a
``Datagram``; ``tools/faults.py`` keeps these tests on its ``Rule`` beside type=/from=/to=.

    src=HOST[:PORT]|:PORT[,...]   the sender's real address (a client's own, or the server's)
    dst=HOST[:PORT]|:PORT[,...]   the receiver's
    port=N[,N...]                 either end's port
    size=N | size=<N | size=>N | size=A..B   the datagram's length in bytes (A..B: both included)
    bytes=OFF:HEX                 the bytes from offset OFF (negative: from the end) are HEX
    bytes=OFF~REGEX               a regular expression (Python's, on bytes) matches from OFF
    field.NAME[.NAME...]=V[,V...] a field the layer decoded has one of these values: a number
                                  (decimal or 0x), a text, or an enumeration's name; a dotted
                                  name reaches into sub-layers and lists (any item)
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable

KEYS = ("src", "dst", "port", "size", "bytes", "field.NAME")
_PLAIN = frozenset(KEYS[:-1])
FIELD = "field."

Test = Callable[["Datagram"], bool]


class Datagram:
    """One datagram as the rules see it: bytes, real addresses (None where unknown, as in the
    simulator), and what the layer decoded (``msg`` None: the layer could not decode it)."""

    __slots__ = ("data", "src", "dst", "msg", "layer")

    def __init__(self, data: bytes, src=None, dst=None, msg=None, layer=None):
        self.data = data
        self.src = src
        self.dst = dst
        self.msg = msg
        self.layer = layer


class MatchError(ValueError):
    """A value that does not parse; the caller adds the rule's text."""


def is_key(key: str) -> bool:
    return key in _PLAIN or (key.startswith(FIELD) and len(key) > len(FIELD))


def parse_key(key: str, value: str) -> Test:
    """The test for ``key=value``; MatchError says what is wrong with the value."""
    if key in ("src", "dst"):
        return _address(key, value)
    if key == "port":
        ports = frozenset(_port(p) for p in value.split(","))
        return lambda d: d.src is not None and (d.src[1] in ports or d.dst[1] in ports)
    if key == "size":
        return _size(value)
    if key == "bytes":
        return _bytes(value)
    return _field(key[len(FIELD):], value)


def _port(word: str) -> int:
    if not word.isdigit() or not 0 < int(word) < 65536:
        raise MatchError(f"bad port '{word}'")
    return int(word)


def _address(key: str, value: str) -> Test:
    exact, hosts, ports = set(), set(), set()
    for word in value.split(","):
        if not word:
            raise MatchError(f"bad address '{value}' (use HOST, HOST:PORT or :PORT)")
        host, colon, port = word.rpartition(":") if ":" in word else (word, "", "")
        if host:
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise MatchError(f"bad address '{word}' (use HOST, HOST:PORT or :PORT)") from None
        if colon and host:
            exact.add((host, _port(port)))
        elif colon:
            ports.add(_port(port))
        else:
            hosts.add(host)
    side = 0 if key == "src" else 1

    def test(d: Datagram) -> bool:
        addr = d.src if side == 0 else d.dst
        return addr is not None and (addr in exact or addr[0] in hosts or addr[1] in ports)

    return test


def _size(value: str) -> Test:
    m = re.fullmatch(r"([<>]?)(\d+)|(\d+)\.\.(\d+)", value)
    if not m:
        raise MatchError(f"bad size '{value}' (N, <N, >N or A..B, in bytes)")
    if m.group(3) is not None:
        low, high = int(m.group(3)), int(m.group(4))
        if low > high:
            raise MatchError(f"bad size '{value}' (A..B with A no more than B)")
        return lambda d: low <= len(d.data) <= high
    n, op = int(m.group(2)), m.group(1)
    if op == "<":
        return lambda d: len(d.data) < n
    if op == ">":
        return lambda d: len(d.data) > n
    return lambda d: len(d.data) == n


def _bytes(value: str) -> Test:
    m = re.fullmatch(r"(-?\d+)([:~])(.+)", value, re.DOTALL)
    if not m:
        raise MatchError(f"bad bytes '{value}' (OFF:HEX or OFF~REGEX, e.g. 0:c4a7 or 4~ab+)")
    offset, how, pattern = int(m.group(1)), m.group(2), m.group(3)

    def start(data: bytes) -> int:  # where the pattern must begin; -1: nowhere
        at = offset if offset >= 0 else len(data) + offset
        return at if 0 <= at <= len(data) else -1

    if how == ":":
        try:
            wanted = bytes.fromhex(pattern)
        except ValueError:
            raise MatchError(f"bad hex '{pattern}' (pairs of hex digits)") from None
        return lambda d: (at := start(d.data)) >= 0 and d.data.startswith(wanted, at)
    try:
        regex = re.compile(pattern.encode("utf-8", "surrogateescape"), re.DOTALL)
    except re.error as exc:
        raise MatchError(f"bad regular expression '{pattern}': {exc}") from None
    return lambda d: (at := start(d.data)) >= 0 and regex.match(d.data, at) is not None


def value_text(word: str) -> str:
    """A value as the fields' texts are compared: numbers by value (0x10 is 16), the rest as written."""
    try:
        return str(int(word, 0))
    except ValueError:
        return word


def _field(path: str, value: str) -> Test:
    names = tuple(path.split("."))
    if not all(name.isidentifier() for name in names):
        raise MatchError(f"bad field name '{path}' (field.NAME or field.NAME.NAME)")
    wanted = frozenset(value_text(v) for v in value.split(","))

    def test(d: Datagram) -> bool:
        return d.msg is not None and not wanted.isdisjoint(d.layer.texts(d.msg, names))

    test.path = names  # for the proxy to check the names against its layer's fields
    return test
