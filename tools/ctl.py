"""``chatapp-proxy ctl URL COMMAND ...``: change a running lossy proxy's rules through its control API
(``--control``), and ``ControlClient``, the same calls for Python code and tests.

examples:
  chatapp-proxy ctl 127.0.0.1:8474 list
  chatapp-proxy ctl 127.0.0.1:8474 add drop type=pri_msg from=Ann --name ann-lost
  chatapp-proxy ctl 127.0.0.1:8474 set ann-lost drop type=pri_msg from=Ann p=0.5
  chatapp-proxy ctl 127.0.0.1:8474 remove ann-lost
  chatapp-proxy ctl 127.0.0.1:8474 stats
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from node.text import escaped
from tools.cli import Parser, examples, prog
from tools.control import PROXY_NAME


class ControlError(Exception):
    """The API said no (status and its message), or could not be reached (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class ControlClient:
    """The control API of one proxy, e.g. ``ControlClient("127.0.0.1:8474")``."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = (url if "://" in url else f"http://{url}").rstrip("/")
        self.timeout = timeout
        # No proxy from the environment (http_proxy): the control endpoint is on this machine.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: object = None):
        """One call; its JSON answer (None for 204).  ControlError for a 4xx/5xx or no connection."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, method=method,
                                         headers={"content-type": "application/json"} if data else {})
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                text = answer.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            raise ControlError(exc.code, str(message)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlError(0, f"cannot reach {self.url}: {reason}") from None
        return json.loads(text) if text else None

    _toxics = f"/proxies/{PROXY_NAME}/toxics"

    def rules(self) -> list[dict]:
        return self.request("GET", self._toxics)

    def add(self, rule: str, name: str | None = None, index: int | None = None) -> dict:
        """Add ``rule`` last, or at ``index`` (from 1) in the order the rules are checked."""
        body = {"rule": rule, **({"name": name} if name else {}), **({"index": index} if index else {})}
        return self.request("POST", self._toxics, body)

    def set(self, name: str, rule: str) -> dict:
        return self.request("POST", f"{self._toxics}/{name}", {"rule": rule})

    def remove(self, name: str) -> None:
        self.request("DELETE", f"{self._toxics}/{name}")

    def reset(self) -> None:
        self.request("POST", "/reset")

    def reload(self) -> list[dict]:
        return self.request("POST", "/reload")["toxics"]

    def stats(self) -> dict:
        """The proxy: its rules with their counters, and its totals."""
        return self.request("GET", f"/proxies/{PROXY_NAME}")


def _show(rules: list[dict], title: str) -> None:
    from rich.console import Console

    from node.grids import rich_grid  # escapes every cell: what the API says is data, never markup

    rows = [(r["name"], r["rule"], r["counters"]["selected"], r["counters"]["applied"]) for r in rules]
    Console().print(rich_grid(("id", "rule", "selected", "applied"), rows, ("selected", "applied"), title=title))


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog=f"{prog()} ctl",
        description="Change a running lossy proxy's rules through its --control address.",
        epilog=examples(__doc__, "chatapp-proxy ctl"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="the proxy's control address: HOST:PORT or http://HOST:PORT")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer as it is")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="the rules, in the order they are checked, with their counters")
    add = commands.add_parser("add", help="add RULE at the end (the words of a rule, as for --rule)")
    add.add_argument("rule", nargs="+", metavar="RULE")
    add.add_argument("--name", help="its id (default: ACTION_N)")
    add.add_argument("--at", type=int, metavar="N", help="check it as the Nth rule (default: last)")
    change = commands.add_parser("set", help="put RULE in place of rule ID (its counters start again)")
    change.add_argument("id", metavar="ID")
    change.add_argument("rule", nargs="+", metavar="RULE")
    remove = commands.add_parser("remove", help="remove rule ID")
    remove.add_argument("id", metavar="ID")
    commands.add_parser("reset", help="remove every rule")
    commands.add_parser("reload", help="the rules of the proxy's start again (its --rule and --rules FILE)")
    commands.add_parser("stats", help="the proxy's totals and the counters of each rule")
    args = parser.parse_args(argv)
    client = ControlClient(args.url)
    try:
        if args.command == "list":
            answer = client.rules()
        elif args.command == "add":
            answer = client.add(" ".join(args.rule), args.name, args.at)
        elif args.command == "set":
            answer = client.set(args.id, " ".join(args.rule))
        elif args.command == "remove":
            answer = client.remove(args.id)
        elif args.command == "reset":
            answer = client.reset()
        elif args.command == "reload":
            answer = client.reload()
        else:
            answer = client.stats()
    except ControlError as exc:
        print(f"{parser.prog}: {escaped(str(exc))}", file=sys.stderr)  # the answer may quote what we sent
        return 1
    if args.json:
        print(json.dumps(answer, indent=1))
    elif args.command in ("list", "reload"):
        _show(answer, f"rules of the proxy at {client.url}")
    elif args.command == "stats":
        _show(answer["toxics"], f"the proxy at {client.url}: counts per rule")
        print(f"totals: {answer['totals']}")
    elif args.command in ("add", "set"):
        print(escaped(f"{answer['name']}: {answer['rule']} (rule {answer['index']} in the order they are checked)"))
    else:
        print("done")
    return 0
