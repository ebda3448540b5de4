#!/usr/bin/env python3
"""ChatApp entry point: parse and check the command line, then hand over to node/.

    python3 ChatApp.py -s <port>
    python3 ChatApp.py -c <name> <server-ip> <server-port> <client-port>
    python3 ChatApp.py --demo
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import re
import socket
import sys

from node.limits import Limits  # light: no Scapy behind it
from tools.cli import Parser, dependencies  # light too: argparse and the standard library


class UserError(Exception):
    """A mistake on the command line: one line on stderr, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(  # no prog: argparse names the command as it was started (ChatApp.py, chatapp)
        status=1,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="UDP group chat: run a server, or a client that registers with one.",
        epilog="examples:\n  %(prog)s -s 6666\n  %(prog)s -c Ann localhost 6666 7771\n  %(prog)s --demo",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("-s", dest="server", metavar="PORT", help="run a server on UDP PORT (1024-65535)")
    mode.add_argument(
        "-c",
        dest="client",
        nargs=4,
        metavar=("NAME", "SERVER_IP", "SERVER_PORT", "CLIENT_PORT"),
        help="run a client called NAME, bound to CLIENT_PORT, registered with the server",
    )
    mode.add_argument(
        "--demo",
        action="store_true",
        help="run a server and three scripted clients on loopback, in this terminal",
    )
    parser.add_argument("--ack-timeout", type=float, default=0.5, metavar="S", help="seconds to wait for an ack before retrying (default 0.5)")
    parser.add_argument("--retries", type=int, default=5, metavar="N", help="tries in all before giving up (default 5)")
    parser.add_argument("--bind", default="0.0.0.0", metavar="IP", help="local address to bind (default all interfaces)")
    parser.add_argument("--no-color", action="store_true", help="no colour (also when NO_COLOR is set)")
    parser.add_argument(
        "--idle-probe",
        type=float,
        default=30.0,
        metavar="S",
        help="server: probe a client not heard from for S seconds, and mark it offline if it does not answer; 0: never (default 30)",
    )
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="server: keep clients, groups and undelivered group messages in FILE (SQLite), and resume them "
        "when started again on it (default: in memory only)",
    )
    limits = parser.add_argument_group("server limits")
    limits.add_argument("--max-clients", type=int, default=Limits.max_clients, metavar="N", help=f"registered names at most (default {Limits.max_clients})")
    limits.add_argument("--max-groups", type=int, default=Limits.max_groups, metavar="N", help=f"groups at most (default {Limits.max_groups})")
    for flag, default, what in (
        ("--max-names-per-ip", Limits.max_names_per_ip, "names registered"),
        ("--max-groups-per-ip", Limits.max_groups_per_ip, "groups created"),
    ):
        limits.add_argument(
            flag, type=int, default=default, metavar="N", help=f"{what} from one IP address (any port) at most; 0: no limit (default {default})"
        )
    limits.add_argument(
        "--rate-limit",
        type=float,
        default=Limits.rate,
        metavar="N",
        help=f"datagrams per second one source may send, clients too; 0: no limit (default {Limits.rate:g})",
    )
    return parser


def parse_port(text: str, role: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1024 <= int(text) <= 65535:
        raise UserError(f"Invalid {role} port number")
    return int(text)


def resolve_server(text: str) -> str:
    """An IPv4 literal, or a host name that resolves to an IPv4 address."""
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise UserError("Invalid server ip address. Try again.") from None
    try:
        return socket.getaddrinfo(text, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except (socket.gaierror, UnicodeError):
        raise UserError("Invalid server ip address. Try again.") from None


def _in_use(exc: OSError, role: str, port: int) -> UserError:
    if exc.errno == errno.EADDRINUSE:
        return UserError(f"{role} port {port} is already in use on this machine")
    return UserError(f"Cannot bind {role.lower()} port {port}: {exc.strerror}")


def run(args: argparse.Namespace) -> int:
    if args.ack_timeout <= 0 or args.retries < 1:
        raise UserError("--ack-timeout must be positive and --retries at least 1")
    if not args.idle_probe >= 0:  # not: NaN too
        raise UserError("--idle-probe must not be negative")
    if args.max_clients < 1 or min(args.max_groups, args.rate_limit, args.max_names_per_ip, args.max_groups_per_ip) < 0:
        raise UserError("--max-clients must be at least 1; --max-groups, the per-IP limits and --rate-limit not negative")
    if args.demo:
        from tools.demo import run_demo  # lazily, like the imports below: --help stays fast

        return run_demo(args)
    # Imported here so that --help and argument errors stay fast (Scapy loads in ~0.1 s).
    import asyncio

    from node.reliable import RetryPolicy
    from node.terminal import Terminal

    policy = RetryPolicy(args.ack_timeout, args.retries)
    limits = Limits(
        args.max_clients,
        args.max_groups,
        args.rate_limit,
        burst=2 * args.rate_limit,
        max_names_per_ip=args.max_names_per_ip,
        max_groups_per_ip=args.max_groups_per_ip,
    )
    terminal = Terminal(color=False if args.no_color else None)
    if args.server is not None:
        from node.runtime import run_server
        from node.server import ServerLogic
        from node.store import SqliteStore, StoreError

        port = parse_port(args.server, "server")
        try:
            store = SqliteStore(args.state) if args.state is not None else None
        except StoreError as exc:
            raise UserError(str(exc)) from None

        async def serve() -> int:
            try:
                logic = ServerLogic(port, policy, limits=limits, idle_probe=args.idle_probe, store=store)
            except StoreError as exc:  # its rows cannot be read back
                raise UserError(str(exc)) from None
            try:
                return await run_server(logic, (args.bind, port), terminal.show, store)
            except OSError as exc:
                raise _in_use(exc, "Server", port) from None

        try:
            return asyncio.run(serve())
        finally:
            if store is not None:
                store.close()

    from node.client import ClientLogic
    from node.names import valid_username
    from node.runtime import run_client

    name, server_ip, server_port, client_port = args.client
    if not valid_username(name):
        raise UserError("Invalid username")
    server = (resolve_server(server_ip), parse_port(server_port, "server"))
    port = parse_port(client_port, "client")
    logic = ClientLogic(name, server, port, policy, limits=limits)

    async def chat() -> int:
        try:
            return await run_client(logic, (args.bind, port), terminal)
        except OSError as exc:
            raise _in_use(exc, "Client", port) from None

    return asyncio.run(chat())


@dependencies()
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        status = run(args)
    except UserError as exc:
        print(exc, file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
