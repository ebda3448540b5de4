"""The server's console is not the way to slow it down: a real server, its output in a
pseudo-terminal, holding a few hundred groups, while one abusive client sends join_group,
leave_group and list_groups as fast as the per-source rate limit lets through; a bystander
(a real ChatApp.py client) keeps working all along."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time

from node.console import LIST_SHOWN
from tests.procs import HOST, PYTHON, ROOT, WAIT
from tools.perf.abuse import RawClient

GROUPS = 300
NOT_RESPONDING = "Server not responding"  # after ">>> " or ">>> (group) "


class Flood:
    """``python -m tools.perf.abuse`` against the server, stopped by its pid."""

    def __init__(self, port: int, mode: str):
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tools.perf.abuse", "--server", f"{HOST}:{port}", "--mode", mode, "--groups", str(GROUPS)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("flooding"):
            self.stop()
            raise AssertionError(f"the abusive client did not start: {line!r}")

    def stop(self) -> tuple[int, int]:
        """(requests sent, answers received)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        match = re.search(r"sent (\d+) answered (\d+)", out)
        assert match, (out, err)
        return int(match.group(1)), int(match.group(2))


def answered(proc, line: str) -> None:
    """The bystander printed ``line``, not that the server stopped answering."""
    match = proc.expect(r"^(" + re.escape(line) + r"|>>> .*" + re.escape(NOT_RESPONDING) + r")\n", flags=re.MULTILINE)
    assert match.group(1) == line, f"{proc.label}: {match.group(1)}"


def test_a_flood_of_group_churn_and_lists_at_the_rate_limit_does_not_starve_a_bystander(cluster):
    # with its per-source rate limit, as users run it; the groups all come from one address
    server = cluster.server("--max-groups-per-ip", "0")
    done = threading.Event()
    # Like a terminal window, read what the server prints as it comes, all along.
    reader = threading.Thread(target=server.wait_until, args=(done.is_set, "the end"),
                              kwargs={"timeout": 600, "output": False}, daemon=True)
    reader.start()
    flood = None
    try:
        setup = RawClient((HOST, server.port), "Setup")
        try:
            setup.register()
            setup.create_groups(GROUPS, timeout=WAIT)
        finally:
            setup.close()
        bystander = cluster.client("Bystander", server)
        flood = Flood(server.port, "mixed")
        rounds, until = 0, time.monotonic() + 3.0
        while rounds < 5 or time.monotonic() < until:  # some rounds, for some seconds of flood
            bystander.sendline("join_group g7")
            answered(bystander, ">>> Entered group g7 successfully")
            bystander.sendline("list_members")
            answered(bystander, ">>> (g7) Members in the group g7:")
            bystander.sendline("leave_group")
            answered(bystander, ">>> Leave group chat g7")
            bystander.sendline("list_groups")
            answered(bystander, f">>> g{GROUPS - 1}")  # the last of the list, in parts
            rounds += 1
        sent, got = flood.stop()
        flood = None
    finally:
        if flood is not None:
            flood.stop()
        done.set()
        reader.join(WAIT)
    assert got >= 1000, f"the flood was served ({got} answers to {sent} requests), not only rate-limited"
    assert NOT_RESPONDING not in bystander.text
    merged = r"^>>> \.\.\. and \d+ more like it in the last second: Client … requested listing groups, current groups:$"
    assert re.search(merged, server.text, re.MULTILINE), "a flood of lines is merged"
    assert re.search(rf"^>>> \.\.\. and {GROUPS - LIST_SHOWN} more$", server.text, re.MULTILINE), "printed lists are cut"
    assert "Traceback" not in server.text
