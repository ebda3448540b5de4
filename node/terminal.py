"""Where the client and server meet the user: line input with editing and
history on a terminal (prompt_toolkit), plain lines otherwise, and tables
drawn with rich on a terminal or as aligned text elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import termios
import threading
from typing import Callable

from .grids import plain_grid, rich_grid
from .render import Table, render
from .tables import SHOWN_AT_ONCE


def _dim_offline(row) -> str | None:
    return "dim" if row[-1] == "offline" else None


def rich_table(table: Table, color: bool) -> str:
    """The table's rows drawn with rich (its title is printed apart), offline clients dimmed."""
    from rich import box  # imported late: start-up time matters for --help
    from rich.console import Console

    grid = rich_grid(table.columns, table.rows, row_style=_dim_offline if color else None,
                     header_style="bold cyan" if color else None, box=box.SIMPLE_HEAD, show_edge=False)
    console = Console(file=io.StringIO(), force_terminal=color, no_color=not color, width=120)
    console.print(grid)
    return console.file.getvalue().rstrip("\n")


class Terminal:
    def __init__(self, color: bool | None = None):
        self.tty = sys.stdout.isatty()
        self.interactive = sys.stdin.isatty() and self.tty and os.environ.get("TERM") != "dumb"
        if color is None:
            color = self.tty and "NO_COLOR" not in os.environ
        self.color = color
        self._session = None
        self._lost = False

    def lost(self) -> bool:
        """True once the terminal has hung up (window closed): from then on every write
        to it fails with EIO.  Writing nothing finds out without printing anything; it
        must be asked before printing, because while prompting the printing is done
        by patch_stdout's thread, which dies with a traceback on that error."""
        if self.tty and not self._lost:
            try:
                os.write(sys.__stdout__.fileno(), b"")
            except (OSError, ValueError):
                self._lost = True
        return self._lost

    def show(self, event) -> None:
        """Print what the user reads for one of the logic's events."""
        if self.lost():
            return
        shown = render(event)
        if isinstance(shown, Table):
            table = Table(shown.title, shown.columns, tuple(shown.rows))  # rows read once, now
            # rich takes about half a millisecond a row: a long table (1,000 groups) is drawn as
            # plain text, a thousand times cheaper, or drawing it would stop the node for seconds
            fancy = self.tty and len(table.rows) <= SHOWN_AT_ONCE
            body = rich_table(table, self.color).split("\n") if fancy else plain_grid(table.columns, table.rows)
            lines = [table.title, *body]
        else:
            lines = shown
        # sys.stdout is looked up now: while prompting, patch_stdout has replaced it
        # with a proxy that prints above the line being typed.
        try:
            sys.stdout.write("\n".join(lines) + "\n")  # one write: a table is never split by other output
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # the terminal is gone (window closed): keep going, deregistration is under way
        if self._session is not None and self._session.app.is_running:
            self._session.app.invalidate()  # the prompt may have changed (group mode)

    async def read(self, typed: Callable[[str], None], ended: Callable[[], None], interrupted: Callable[[], None], prompt: Callable[[], str]) -> None:
        """Feed typed lines to ``typed``; then ``ended`` at end of input, or ``interrupted`` on Ctrl+C."""
        try:
            if self.interactive:
                await self._read_interactive(typed, ended, interrupted, prompt)
                return
            await self._read_plain(typed)
        except OSError:
            pass  # the terminal went away: the same as end of input
        ended()

    async def _read_interactive(self, typed, ended, interrupted, prompt) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.output import create_output
        from prompt_toolkit.patch_stdout import patch_stdout

        output = create_output()
        # No cursor position requests: before each line it prints above the prompt,
        # prompt_toolkit waits up to 1 s for the terminal's answer, and an answer later than
        # that (a slow link, a busy machine) is echoed among the lines as "^[[25;1R".  A
        # one-line prompt without menus does not need to know the cursor's row.
        output.enable_cpr = False
        self._session = PromptSession(key_bindings=_leaving_keys(), output=output)
        with _control_keys_not_echoed(sys.stdin), patch_stdout(raw=True):
            while True:
                try:
                    line = await self._prompt(prompt)
                except EOFError:  # the input closed under the prompt
                    line = ENDED
                if line is ENDED:
                    ended()
                    return
                if line is INTERRUPTED:
                    interrupted()
                    return
                typed(line)

    async def _prompt(self, prompt: Callable[[], str]) -> str:
        """One typed line, or ENDED or INTERRUPTED.  Cancelled (the client exits on its own:
        refused, the server gone, deregistered), the prompt is erased rather than left as an
        empty line of its own among the client's last lines."""
        app = self._session.app
        # A task of its own, so that the prompt is still running when this is cancelled.  (The
        # keys end it with a result, not with KeyboardInterrupt, which a task passes to the loop.)
        asking = asyncio.ensure_future(self._session.prompt_async(prompt, handle_sigint=False))
        try:
            return await asyncio.shield(asking)
        except asyncio.CancelledError:
            app.erase_when_done = True
            asking.cancel()
            await asyncio.gather(asking, return_exceptions=True)
            raise

    async def _read_plain(self, typed) -> None:
        # A daemon thread works for every kind of stdin (pipe, file, /dev/null)
        # and never holds up the exit, unlike the loop's default executor.
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def pump_stdin() -> None:
            try:
                # A strict decoder would end this thread on the first byte that is not in
                # the terminal's encoding; surrogateescape would make lines that cannot be sent.
                sys.stdin.reconfigure(errors="replace")
            except (AttributeError, ValueError):
                pass  # not a text stream we can adjust: read it as it is
            try:
                for line in sys.stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\r\n"))
            except OSError:
                pass  # the terminal hung up (EIO): that is the end of input too
            try:
                loop.call_soon_threadsafe(lines.put_nowait, None)
            except RuntimeError:
                pass  # the loop has finished already: nobody is waiting for input

        threading.Thread(target=pump_stdin, name="stdin", daemon=True).start()
        while (line := await lines.get()) is not None:
            typed(line)


@contextlib.contextmanager
def _control_keys_not_echoed(stdin):
    """The terminal's ECHOCTL off while the prompt runs, as it was again after.  To print a line
    above the prompt, prompt_toolkit puts the terminal in cooked mode for a moment, and a Ctrl+C
    typed then is the terminal's: a SIGINT (which the client handles as it handles the key) and an
    echoed "^C" where the prompt is about to be redrawn, so that the client's last line would read
    "^C>>> You are Offline. Bye.".  Without ECHOCTL the echo is the bare control byte, which a
    terminal does not show."""
    try:
        before = termios.tcgetattr(stdin.fileno())
    except (termios.error, OSError, ValueError):
        yield  # not a terminal termios can change: nothing to turn off
        return
    quiet = list(before)
    quiet[3] &= ~getattr(termios, "ECHOCTL", 0)  # lflag
    termios.tcsetattr(stdin.fileno(), termios.TCSANOW, quiet)
    try:
        yield
    finally:
        try:
            termios.tcsetattr(stdin.fileno(), termios.TCSANOW, before)
        except (termios.error, OSError, ValueError):
            pass  # the terminal hung up meanwhile: there is nothing left to restore


ENDED = "\x04"  # what the prompt returns for Ctrl+D on an empty line; never a typed line (it ends it)
INTERRUPTED = "\x03"  # and for Ctrl+C


def _leaving_keys():
    """Ctrl+C, and Ctrl+D on an empty line, as prompt_toolkit has them, except that the prompt
    is erased (the client is leaving, and its last lines follow) and that they end the prompt
    with a result rather than an exception."""
    from prompt_toolkit.application import get_app
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    def leave(app, result: str) -> None:
        app.erase_when_done = True
        app.exit(result=result)

    @keys.add("c-c")
    def _interrupt(event) -> None:
        leave(event.app, INTERRUPTED)

    @keys.add("c-d", filter=Condition(lambda: not get_app().current_buffer.text))
    def _end(event) -> None:
        leave(event.app, ENDED)

    return keys
