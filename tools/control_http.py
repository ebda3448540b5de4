"""HTTP/1.1 for the proxy's control API (tools/control.py), with h11 under asyncio streams.

h11 parses and frames; this module only moves bytes and enforces limits, so that a huge, slow or
broken request costs the proxy nothing but a short answer: a request head above MAX_HEAD (431) or a
body above MAX_BODY (413) is refused, a connection that sends nothing for IDLE seconds is closed, at
most MAX_CONNECTIONS are served at once, and whatever goes wrong in one connection ends only it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from http import HTTPStatus
from typing import Callable

import h11

MAX_HEAD = 8 * 1024
MAX_BODY = 64 * 1024
IDLE = 10.0  # seconds a client may take to send a whole request
MAX_CONNECTIONS = 16

Handler = Callable[[str, str, bytes], tuple[int, object, list[tuple[str, str]]]]


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def serve(handle: Handler, host: str, port: int) -> asyncio.AbstractServer:
    """Serve ``handle`` (ControlAPI.handle) on host:port (port 0: any); the server, already listening."""
    open_sessions: set[asyncio.Task] = set()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(open_sessions) >= MAX_CONNECTIONS:
            writer.close()  # no answer at all: answering would cost what the limit saves
            return
        task = asyncio.current_task()
        open_sessions.add(task)
        try:
            await _session(handle, reader, writer)
        except (asyncio.TimeoutError, ConnectionError):
            pass  # a client that stopped reading, or left
        except Exception as exc:  # noqa: BLE001  one connection's trouble must not reach the loop
            print(f"control: a connection failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            open_sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(session, host, port)


async def _session(handle: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    while True:
        try:
            request = await asyncio.wait_for(_read_request(conn, reader, writer), IDLE)
        except (asyncio.TimeoutError, ConnectionError):
            return  # idle or gone: close without a word
        except h11.RemoteProtocolError as exc:
            await _respond(conn, writer, exc.error_status_hint, {"error": f"bad HTTP: {exc}", "status": exc.error_status_hint}, close=True)
            return
        except _Refused as exc:
            await _respond(conn, writer, exc.status, {"error": str(exc), "status": exc.status}, close=True)
            return
        if request is None:
            return
        method, target, body = request
        try:
            status, payload, headers = handle(method, target, body)
        except Exception as exc:  # noqa: BLE001  a bug of ours: said to the caller and on stderr, the proxy goes on
            print(f"control: {method} {target[:100]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status, payload, headers = 500, {"error": f"internal error: {type(exc).__name__}", "status": 500}, []
        await _respond(conn, writer, status, payload, headers)
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return  # h11 says this connection cannot carry another request
        conn.start_next_cycle()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> tuple[str, str, bytes] | None:
    """The next request (method, target, body), or None when the client has closed."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(16 * 1024))
        elif isinstance(event, h11.Request):
            head = event
            length = dict(event.headers).get(b"content-length")
            if length is not None and int(length) > MAX_BODY:
                raise _Refused(413, f"the body is over {MAX_BODY} bytes")
            if conn.they_are_waiting_for_100_continue:  # curl asks so for a body over 1 KiB
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _Refused(413, f"the body is over {MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage):
            return head.method.decode("ascii", "replace"), head.target.decode("ascii", "replace"), bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _respond(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, payload,
                   extra: list[tuple[str, str]] = (), close: bool = False) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    data = b"" if payload is None else json.dumps(payload).encode() + b"\n"
    headers = [*extra] if status == 204 else [("content-length", str(len(data))), *extra]
    if payload is not None:
        headers.append(("content-type", "application/json"))
    if close:
        headers.append(("connection", "close"))  # the rest of what it sent is not read
    reason = HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b""
    writer.write(conn.send(h11.Response(status_code=status, headers=headers, reason=reason)))
    if data:
        writer.write(conn.send(h11.Data(data=data)))
    writer.write(conn.send(h11.EndOfMessage()))
    await asyncio.wait_for(writer.drain(), IDLE)
