"""The lossy proxy's control API, without I/O: a request (method, path, body) in, a status and a JSON
value out.  tools/control_http.py speaks HTTP for it; tools/ctl.py is its client.

The shapes follow Toxiproxy's API (one proxy, named ``chat``; its rules are "toxics"), with our rule
text as the one description of a rule: docs/proxy-control.md.  The API changes the live rule list of
the proxy's FaultPlan on the proxy's own event loop, so a change holds from the next datagram on,
and sessions (mirror ports) are never touched.
"""

from __future__ import annotations

import json
import re
from typing import Callable

from tools.faults import ACTIONS, Rule, RuleError

PROXY_NAME = "chat"
VERSION = "chatapp-proxy control 1"
MAX_RULES = 256  # every datagram is checked against the rules in turn: keep the list short
MAX_RULE_TEXT = 1000
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

Reply = tuple[int, object]  # status, JSON value (None: no body)
Headers = list[tuple[str, str]]


class ApiError(Exception):
    def __init__(self, status: int, message: str, allow: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.allow = allow  # for 405: the methods the path has


def error_body(status: int, message: str) -> dict:
    """Toxiproxy's error shape: {"error": message, "status": code}."""
    return {"error": message, "status": status}


def rule_json(rule: Rule, index: int) -> dict:
    """A rule as a Toxiproxy toxic, plus our own fields (rule, index, counters)."""
    words = rule.text.split()
    attributes = {k: v for k, _, v in (w.partition("=") for w in words[1:] if "=" in w)}
    if len(words) > 1 and "=" not in words[1]:
        attributes["arg"] = words[1]
    stream = "upstream" if rule.dst == {"server"} else "downstream" if rule.src == {"server"} else "both"
    return {
        "name": rule.name,
        "type": rule.action,
        "stream": stream,
        "toxicity": 1.0 if rule.p is None else rule.p,
        "attributes": attributes,
        "rule": rule.text,
        "index": index + 1,  # its place in the first-match order, from 1 as everywhere shown
        "counters": {"selected": rule.selected, "applied": rule.applied},
    }


def toxic_rule(body: dict) -> str:
    """Rule text for a body in Toxiproxy's form ({"type", "attributes", "toxicity", "stream"}): so that
    a Toxiproxy client can add its ``latency`` and ``timeout`` toxics, or any of our actions."""
    kind, attributes = body.get("type"), body.get("attributes") or {}
    toxicity, stream = body.get("toxicity", 1.0), body.get("stream", "downstream")
    if not isinstance(attributes, dict) or not isinstance(toxicity, (int, float)) or isinstance(toxicity, bool):
        raise ApiError(400, "attributes must be an object and toxicity a number")
    if not 0 <= toxicity <= 1:
        raise ApiError(400, f"toxicity {toxicity} is not a probability from 0 to 1")
    attributes = dict(attributes)
    if kind == "latency":  # Toxiproxy: latency and jitter in milliseconds
        words = [f"delay {_number(attributes.pop('latency', 0))}ms±{_number(attributes.pop('jitter', 0))}ms"]
    elif kind == "timeout":  # Toxiproxy: data stops (the closing of a connection has no UDP meaning)
        attributes.pop("timeout", None)
        words = ["drop"]
    elif kind in ACTIONS:
        arg = attributes.pop("arg", None)
        words = [kind] + ([str(arg)] if arg is not None else [])
    else:
        raise ApiError(400, f"toxic type '{kind}' has no equivalent here (use one of latency, timeout, "
                            f"{', '.join(ACTIONS)}, or give our rule text as \"rule\")")
    words += [f"{key}={value}" for key, value in attributes.items()]
    if toxicity < 1:
        words.append(f"p={toxicity}")
    if stream not in ("upstream", "downstream", "both"):
        raise ApiError(400, f"stream '{stream}' is not upstream, downstream or both")
    words += {"upstream": ["to=server"], "downstream": ["from=server"], "both": []}[stream]
    return " ".join(words)


def _number(value) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ApiError(400, f"'{value}' is not a number of milliseconds")
    return f"{value:g}"


class ControlAPI:
    """Requests on one proxy's rules.  ``proxy`` is a LossyProxy (its ``plan``, ``counters``, address);
    ``reload`` gives the rules of the proxy's start again (from --rules), None if there is no file."""

    def __init__(self, proxy, reload: Callable[[], list[Rule]] | None = None):
        self.proxy = proxy
        self.reload = reload
        self._made = 0  # names given so far: a removed rule's name is never given again

    # -- the rules, each with a name ---------------------------------------------------------

    def rules(self) -> list[Rule]:
        """The live rule list, every rule named (rules from the command line or a reload are named here)."""
        rules = self.proxy.plan.rules
        for rule in rules:
            if not rule.name:
                rule.name = self._new_name(rule.action)
        return rules

    def _new_name(self, action: str) -> str:
        taken = {rule.name for rule in self.proxy.plan.rules}
        while True:
            self._made += 1
            name = f"{action}_{self._made}"  # like Toxiproxy's default names (type_stream)
            if name not in taken:
                return name

    def _find(self, name: str) -> int:
        for index, rule in enumerate(self.rules()):
            if rule.name == name:
                return index
        raise ApiError(404, f"no rule named '{name[:64]}'")

    # -- requests ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, object, Headers]:
        """One request: status, JSON value, headers.  Every failure is an ApiError (4xx) made JSON here."""
        try:
            return (*self._route(method, target.split("?", 1)[0].rstrip("/") or "/", body), [])
        except ApiError as exc:
            return exc.status, error_body(exc.status, str(exc)), [("allow", ", ".join(exc.allow))] if exc.allow else []

    def _route(self, method: str, path: str, body: bytes) -> Reply:
        parts = path.strip("/").split("/")
        if path == "/version":
            self._allow(method, "GET")
            return 200, {"version": VERSION}
        if path == "/reset":
            self._allow(method, "POST")
            self.proxy.replace_rules([])
            return 204, None
        if path == "/reload":
            self._allow(method, "POST")
            return 200, self._reload()
        if path == "/proxies":
            self._allow(method, "GET")
            return 200, {PROXY_NAME: self._proxy_json()}
        if parts[0] != "proxies" or len(parts) > 4 or (len(parts) > 2 and parts[2] != "toxics"):
            raise ApiError(404, f"no such path: {path[:100]}")
        if parts[1] != PROXY_NAME:
            raise ApiError(404, f"no proxy named '{parts[1][:64]}' (this one is '{PROXY_NAME}')")
        if len(parts) == 2:
            self._allow(method, "GET")
            return 200, self._proxy_json()
        if len(parts) == 3:
            self._allow(method, "GET", "POST")
            if method == "GET":
                return 200, [rule_json(rule, i) for i, rule in enumerate(self.rules())]
            return 200, self._add(_json_object(body))
        name = parts[3]
        self._allow(method, "GET", "POST", "PATCH", "DELETE")
        index = self._find(name)
        if method == "GET":
            return 200, rule_json(self.proxy.plan.rules[index], index)
        if method == "DELETE":
            self.proxy.plan.remove(index)
            return 204, None
        return 200, self._change(index, _json_object(body))

    @staticmethod
    def _allow(method: str, *methods: str) -> None:
        if method not in methods:
            raise ApiError(405, f"{method[:16]} is not allowed here (only {', '.join(methods)})", methods)

    def _proxy_json(self) -> dict:
        from tools.lossy_proxy import totals  # the proxy's own summary line

        host, port = self.proxy.address
        return {
            "name": PROXY_NAME,
            "listen": f"{host}:{port}",
            "upstream": f"{self.proxy.server[0]}:{self.proxy.server[1]}",
            "enabled": True,
            "toxics": [rule_json(rule, i) for i, rule in enumerate(self.rules())],
            "counters": dict(self.proxy.counters),
            "totals": totals(self.proxy.counters),
        }

    def _parse(self, body: dict) -> Rule:
        text = body.get("rule")
        if text is None:
            text = toxic_rule(body)
        if not isinstance(text, str) or len(text) > MAX_RULE_TEXT:
            raise ApiError(400, f"\"rule\" must be rule text of at most {MAX_RULE_TEXT} characters")
        try:
            return Rule.parse(text)
        except RuleError as exc:
            raise ApiError(400, str(exc)) from None

    def _add(self, body: dict) -> dict:
        name = body.get("name") or None  # Toxiproxy's clients send "" for "pick one"
        if name is not None and (not isinstance(name, str) or not NAME.fullmatch(name)):
            raise ApiError(400, "a name is 1 to 64 letters, digits, '_', '.' or '-'")
        rule = self._parse(body)
        rules = self.rules()
        if any(r.name == name for r in rules):
            raise ApiError(409, f"a rule named '{name}' exists already")
        if len(rules) >= MAX_RULES:
            raise ApiError(409, f"the proxy has {MAX_RULES} rules, the most it takes")
        # Where it goes in the first-match order, from 1 (default: last), e.g. a pass before a drop.
        place = body.get("index", len(rules) + 1)
        if not isinstance(place, int) or isinstance(place, bool) or not 1 <= place <= len(rules) + 1:
            raise ApiError(400, f"index must be a whole number from 1 to {len(rules) + 1}")
        rule.name = name or self._new_name(rule.action)
        self.proxy.plan.insert(place - 1, rule)
        self.proxy.rules_changed()  # its during= counts from now
        return rule_json(rule, place - 1)

    def _change(self, index: int, body: dict) -> dict:
        """A new rule in the old one's place and name; its counters start again from 0."""
        rules = self.proxy.plan.rules
        if "name" in body and body["name"] != rules[index].name:
            raise ApiError(400, "a rule's name cannot be changed (remove it and add it again)")
        if "rule" not in body and "type" not in body:
            raise ApiError(400, "give the new rule as \"rule\", or a whole toxic with its type: "
                                "a rule's text cannot be changed in part")
        rule = self._parse(body)
        rule.name = rules[index].name
        self.proxy.plan.put(index, rule)
        self.proxy.rules_changed()
        return rule_json(rule, index)

    def _reload(self) -> dict:
        if self.reload is None:
            raise ApiError(409, "this proxy was started without --rules: there is no file to reload")
        try:
            self.proxy.replace_rules(self.reload())
        except (RuleError, OSError) as exc:
            raise ApiError(400, f"rules not reloaded (the old ones stay): {exc}") from None
        return {"toxics": [rule_json(rule, i) for i, rule in enumerate(self.rules())]}


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object, e.g. {\"rule\": \"drop type=ack\"}")
    return value
