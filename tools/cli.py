"""Command-line pieces the tools and ChatApp.py share: the parser, the command's name, one-line user
errors, argument types (HOST:PORT, ports, positive numbers, durations), captures, and an output that a
reader may close early."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import socket
import sys
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix: one line on stderr, no traceback."""


class Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors exit with ``status`` (ChatApp.py's is 1, the tools' 2):
    the usage, then ``PROG: error: MESSAGE``, on stderr."""

    def __init__(self, *args, status: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.status = status

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(self.status, f"{self.prog}: error: {message}\n")


def port(text: str) -> int:
    """argparse type for a UDP port, 1 to 65535."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"'{text}' is not a UDP port")
    return int(text)


def positive(kind=float):
    """argparse type for a number above 0 of ``kind`` (int or float)."""

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:  # also refuses a NaN
            raise argparse.ArgumentTypeError(f"'{text}' is not a positive number")
        return value

    return convert


def seconds(word: str) -> float:
    """A duration as written on a command line: ``300ms``, ``1.5s`` or ``2`` (seconds); ValueError if not."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", word)
    if not m:
        raise ValueError(f"not a duration: {word!r}")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def host_port(text: str) -> tuple[str, int]:
    """argparse type for HOST:PORT (the host resolved to IPv4; empty host: 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT")
    try:
        return socket.gethostbyname(host or "127.0.0.1"), int(port)
    except (socket.gaierror, UnicodeError):
        raise argparse.ArgumentTypeError(f"cannot resolve '{host}'") from None


def open_capture(path: str):
    """A Scapy PcapReader (pcap or pcapng) for ``path``, or UserError."""
    from scapy.error import Scapy_Exception
    from scapy.layers import inet, l2  # noqa: F401  (registers the link types a capture can have)
    from scapy.utils import PcapReader

    try:
        return PcapReader(path)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except Scapy_Exception as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def prog() -> str:
    """The name the user typed for this command (``chatapp-sniff``, ``sniff.py``...), as argparse
    shows it in usage lines; error lines use it too."""
    return os.path.basename(sys.argv[0])


# The checkout: a module missing from it is a bug of ours, one missing from outside it is a dependency.
CHECKOUT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def dependencies():
    """Around a command's imports and its main() (also as a decorator): a package the project depends
    on (scapy, rich, prompt_toolkit) that this Python lacks ends the command with one line that says
    how to set up, exit status 1, instead of a traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if not top or (CHECKOUT / top).is_dir() or (CHECKOUT / f"{top}.py").is_file():
            raise
        sys.stderr.write(
            f"{prog()}: the Python package '{top}' is missing for {sys.executable}; set up with ./dev in the "
            "checkout (it builds .venv; then run the commands in .venv/bin), or pip install .\n"
        )
        raise SystemExit(1) from None


def examples(doc: str, script: str) -> str:
    """The examples at the end of a tool's docstring, as an argparse epilog that names the command
    as it was started (argparse fills in %(prog)s)."""
    return doc[doc.index("examples:"):].replace(script, "%(prog)s")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 rule``, ``2 rules``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


class _Stdout:
    """sys.stdout whose reader may leave early (``| head``): the first write that finds the pipe
    closed sends the rest of the output to /dev/null instead of raising, so the command goes on
    to finish its work (the files it was asked for) and exits as usual, without a traceback."""

    def __init__(self, stream):
        self.stream = stream
        self.gone = False  # the reader closed the pipe

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        self.gone = True
        # What is still buffered, and whatever comes later, now goes nowhere, quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)  # isatty, fileno, encoding...: the real stream's


def reader_may_leave(main):
    """Decorates a command's main(): while it runs, sys.stdout is a ``_Stdout``, so a reader that
    leaves early ends the output quietly and the command still does the rest of its work.  Print
    through sys.stdout (print(), a rich Console without a file of its own) for this to apply."""

    @functools.wraps(main)
    def guarded(*args, **kwargs):
        guard = sys.stdout = _Stdout(sys.stdout)
        try:
            return main(*args, **kwargs)
        finally:
            guard.flush()  # the last buffered output, while a closed pipe is still quiet
            sys.stdout = guard.stream

    return guarded


def stdout_gone() -> bool:
    """Has the reader of stdout left (in a main() under ``reader_may_leave``)?"""
    return isinstance(sys.stdout, _Stdout) and sys.stdout.gone
