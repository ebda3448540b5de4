"""The proxy's control API (tools/control.py) without sockets: requests in, status and JSON out, on
a real FaultPlan; and the --map file (tools/mirror_map.py).  Over HTTP and with real processes:
tests/integration/test_proxy_control_http.py, tests/e2e/test_proxy_runtime.py."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tools import mirror_map
from tools.control import MAX_RULES, ControlAPI
from tools.faults import FaultPlan, Rule, RuleError

TOXICS = "/proxies/chat/toxics"


class Proxy:
    """What the API uses of a LossyProxy: its plan, counters and addresses."""

    def __init__(self, rules=()):
        self.plan = FaultPlan(rules, seed=1)
        self.counters = Counter()
        self.server = ("127.0.0.1", 6666)
        self.address = ("127.0.0.1", 7000)

    def replace_rules(self, rules):
        self.plan.replace(rules)

    def rules_changed(self):
        self.plan.activate(self.now)

    now = 0.0  # the proxy's clock


def call(api: ControlAPI, method: str, path: str, body=None):
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    status, payload, headers = api.handle(method, path, raw)
    return status, payload, dict(headers)


def test_rules_are_added_listed_changed_and_removed_by_name_and_the_plan_follows_at_once():
    proxy = Proxy(["pass type=reg"])
    api = ControlAPI(proxy)
    status, added, _ = call(api, "POST", TOXICS, {"rule": "drop type=pri_msg from=A", "name": "lost"})
    assert status == 200 and added["name"] == "lost" and added["index"] == 2 and added["type"] == "drop"
    assert proxy.plan.decide(b"x", "pri_msg", "A", "B").action == "drop"  # the next datagram meets it
    status, listed, _ = call(api, "GET", TOXICS)
    assert [(r["name"], r["rule"]) for r in listed] == [("pass_1", "pass type=reg"), ("lost", "drop type=pri_msg from=A")]
    assert listed[1]["counters"] == {"selected": 1, "applied": 1}
    status, changed, _ = call(api, "POST", f"{TOXICS}/lost", {"rule": "delay 1s type=pri_msg"})
    assert status == 200 and changed["name"] == "lost" and changed["counters"] == {"selected": 0, "applied": 0}
    assert [r.text for r in proxy.plan.rules] == ["pass type=reg", "delay 1s type=pri_msg"]
    assert call(api, "DELETE", f"{TOXICS}/lost")[:2] == (204, None)
    assert proxy.plan.decide(b"x", "pri_msg", "A", "B").action == "pass"
    assert call(api, "POST", "/reset")[0] == 204 and proxy.plan.rules == []


def test_a_rule_added_at_an_index_is_checked_in_that_place():
    proxy = Proxy(["drop type=pri_msg"])
    status, added, _ = call(ControlAPI(proxy), "POST", TOXICS, {"rule": "pass type=pri_msg from=A", "index": 1})
    assert status == 200 and added["index"] == 1
    assert [r.text for r in proxy.plan.rules] == ["pass type=pri_msg from=A", "drop type=pri_msg"]
    assert proxy.plan.decide(b"x", "pri_msg", "A", "B").action == "pass"
    assert proxy.plan.decide(b"x", "pri_msg", "C", "B").action == "drop"


def test_names_given_by_the_api_are_never_given_twice():
    api = ControlAPI(Proxy())
    first = call(api, "POST", TOXICS, {"rule": "drop"})[1]["name"]
    call(api, "DELETE", f"{TOXICS}/{first}")
    second = call(api, "POST", TOXICS, {"rule": "drop"})[1]["name"]
    assert first != second
    assert call(api, "POST", TOXICS, {"rule": "drop", "name": second})[0] == 409


def test_the_proxy_shows_its_rules_counters_and_totals_as_toxiproxy_shows_a_proxy():
    proxy = Proxy(["drop to=server p=0.5"])
    proxy.counters.update(forwarded=3, drop=1, non_chat=0)
    status, shown, _ = call(api := ControlAPI(proxy), "GET", "/proxies/chat")
    assert status == 200 and shown["listen"] == "127.0.0.1:7000" and shown["upstream"] == "127.0.0.1:6666"
    toxic = shown["toxics"][0]
    assert (toxic["stream"], toxic["toxicity"], toxic["attributes"]) == ("upstream", 0.5, {"to": "server", "p": "0.5"})
    assert shown["counters"]["forwarded"] == 3 and "1 datagram in" in shown["totals"]
    assert call(api, "GET", "/proxies")[1] == {"chat": shown}


@pytest.mark.parametrize(
    "body, words",
    [
        ({"type": "latency", "attributes": {"latency": 300, "jitter": 50}, "name": ""}, "delay 300ms±50ms from=server"),
        ({"type": "timeout", "attributes": {"timeout": 0}, "stream": "upstream", "toxicity": 0.25}, "drop p=0.25 to=server"),
        ({"type": "duplicate", "attributes": {"arg": 2, "type": "ack"}, "stream": "both"}, "duplicate 2 type=ack"),
    ],
)
def test_a_toxic_in_toxiproxys_form_becomes_our_rule(body, words):
    api = ControlAPI(Proxy())
    status, toxic, _ = call(api, "POST", TOXICS, body)
    assert status == 200 and toxic["rule"] == words
    Rule.parse(toxic["rule"])  # and it is a rule of ours


@pytest.mark.parametrize(
    "method, path, body, status, says",
    [
        ("POST", TOXICS, b"{not json", 400, "not JSON"),
        ("POST", TOXICS, b"[1, 2]", 400, "JSON object"),
        ("POST", TOXICS, b"[" * 100000, 400, "not JSON"),
        ("POST", TOXICS, {"rule": "frop type=ack"}, 400, "unknown action 'frop'"),
        ("POST", TOXICS, {"rule": 7}, 400, "rule text"),
        ("POST", TOXICS, {"type": "bandwidth", "attributes": {"rate": 1}}, 400, "no equivalent"),
        ("POST", TOXICS, {"rule": "drop", "name": "no spaces"}, 400, "a name is"),
        ("GET", f"{TOXICS}/nobody", None, 404, "no rule named 'nobody'"),
        ("DELETE", f"{TOXICS}/nobody", None, 404, "no rule named"),
        ("GET", "/proxies/other/toxics", None, 404, "no proxy named 'other'"),
        ("GET", "/admin", None, 404, "no such path"),
        ("PUT", TOXICS, {"rule": "drop"}, 405, "PUT is not allowed"),
        ("GET", "/reset", None, 405, "GET is not allowed"),
        ("POST", "/reload", None, 409, "without --rules"),
        ("POST", f"{TOXICS}/pass_1", {"rule": "drop", "name": "other"}, 400, "cannot be changed"),
        ("PATCH", f"{TOXICS}/pass_1", {"toxicity": 0.5}, 400, "cannot be changed in part"),
        ("POST", TOXICS, {"type": "drop", "toxicity": 2}, 400, "not a probability"),
        ("POST", TOXICS, {"rule": "drop", "index": 3}, 400, "from 1 to 2"),
        ("POST", TOXICS, {"rule": "drop", "index": "1"}, 400, "index must be"),
    ],
)
def test_a_bad_request_gets_a_4xx_with_a_message_and_changes_nothing(method, path, body, status, says):
    proxy = Proxy(["pass type=reg"])
    got, payload, headers = call(ControlAPI(proxy), method, path, body)
    assert got == status and payload["status"] == status and says in payload["error"]
    if status == 405:
        assert "POST" in headers["allow"]
    assert [r.text for r in proxy.plan.rules] == ["pass type=reg"]


def test_the_rule_list_has_a_limit():
    api = ControlAPI(Proxy(["pass"] * (MAX_RULES - 1)))
    assert call(api, "POST", TOXICS, {"rule": "drop"})[0] == 200
    status, payload, _ = call(api, "POST", TOXICS, {"rule": "drop"})
    assert status == 409 and f"{MAX_RULES} rules" in payload["error"]


def test_reload_replaces_the_rules_or_keeps_the_old_ones_when_the_file_is_bad():
    proxy = Proxy(["drop type=ack"])
    texts = ["pass type=reg"]

    def reload():
        return [Rule.parse(t) for t in texts]

    api = ControlAPI(proxy, reload)
    status, payload, _ = call(api, "POST", "/reload")
    assert status == 200 and [r["rule"] for r in payload["toxics"]] == ["pass type=reg"]
    texts[:] = ["frop"]
    status, payload, _ = call(api, "POST", "/reload")
    assert status == 400 and "the old ones stay" in payload["error"]
    assert [r.text for r in proxy.plan.rules] == ["pass type=reg"]
    with pytest.raises(RuleError):
        reload()


# -- the map of mirror ports -------------------------------------------------------------------------


def test_the_map_is_written_and_read_back(tmp_path):
    path = str(tmp_path / "map.json")
    assert mirror_map.load(path) == mirror_map.MirrorMap()  # no file yet: the first start
    entries = [mirror_map.Mapped(("127.0.0.1", 5001), 40001, "Ann"), mirror_map.Mapped(("127.0.0.1", 5002), 40002, None)]
    mirror_map.save(path, 7000, entries)
    assert mirror_map.load(path) == mirror_map.MirrorMap(7000, entries)


def test_entries_of_a_map_that_make_no_sense_are_left_out_and_said(tmp_path):
    path = tmp_path / "map.json"
    good = {"real": "127.0.0.1:5001", "port": 40001, "name": "Ann"}
    bad = [{"real": "nowhere", "port": 1}, {"real": "127.0.0.1:5", "port": 70000}, "x", {"real": "1.2.3.4:5", "port": True}]
    path.write_text(json.dumps({"listen": "7000", "mirrors": [good, *bad]}))
    loaded = mirror_map.load(str(path))
    assert loaded.listen is None and loaded.mirrors == [mirror_map.Mapped(("127.0.0.1", 5001), 40001, "Ann")]
    assert len(loaded.skipped) == len(bad)


@pytest.mark.parametrize("text", ["{", "[]", '{"mirrors": 3}', "\xff"])
def test_a_map_that_is_not_one_is_a_clear_error(tmp_path, text):
    path = tmp_path / "map.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(mirror_map.MapError, match="map"):
        mirror_map.load(str(path))


def test_timed_rules_added_through_the_api_count_from_their_adding_and_wait_for_their_trigger():
    """during= counts from when the API added the rule; since= waits for its type even though the
    rule did not come in by the command line."""
    proxy = Proxy()
    api = ControlAPI(proxy)
    proxy.now = 100.0
    assert call(api, "POST", TOXICS, {"rule": "drop type=pri_msg during=..5s", "name": "window"})[0] == 200
    assert call(api, "POST", TOXICS, {"rule": "drop type=ack since=kick", "name": "after_kick"})[0] == 200
    assert proxy.plan.decide(b"x", "pri_msg", "A", "B", now=104.0).action == "drop"
    assert proxy.plan.decide(b"x", "pri_msg", "A", "B", now=106.0).action == "pass"
    assert proxy.plan.decide(b"x", "ack", "A", "B", now=106.0).action == "pass"
    proxy.plan.decide(b"x", "kick", "server", "A", now=107.0)
    assert proxy.plan.decide(b"x", "ack", "A", "B", now=108.0).action == "drop"
    assert call(api, "DELETE", f"{TOXICS}/after_kick")[0] == 204
    assert proxy.plan.decide(b"x", "ack", "A", "B", now=109.0).action == "pass"
