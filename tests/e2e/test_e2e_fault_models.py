"""A chat over a realistic network: real ChatApp.py processes with the real proxy process between
them, its rules the netem-like models of tools/impairments.py (bursty loss, a delay distribution,
a rate-limited link).  The chat goes on as it should, and the proxy's --log and --stats show that
each model acted (a test whose fault never happened would prove nothing)."""

from __future__ import annotations

import json
import re

from tests.procs import HOST, ProxyProcess, in_group, start_clients

RULES = [
    "drop gemodel=5%,50% type=grp_msg",  # the server's group messages to members lost in bursts
    "delay 20ms±15ms dist=pareto corr=25% type=ack",  # every ack late, with a long tail
    "rate 20kbps limit=50 from=server",  # the rest from the server on a 20 kB/s link per client
]


def test_a_group_chat_over_bursty_loss_pareto_delays_and_a_rate_limit(cluster, tmp_path):
    log = tmp_path / "proxy.jsonl"
    server = cluster.server("--ack-timeout", "0.2")
    proxy = ProxyProcess((HOST, server.port), *(arg for rule in RULES for arg in ("--rule", rule)),
                         "--seed", "5", "--log", str(log), "--stats")
    try:
        sender, *members = start_clients(cluster, ["A", "B", "C"], proxy.address[1], "--ack-timeout", "0.2")
        in_group([sender, *members], server)
        texts = [f"m{i}" for i in range(12)]
        for text in texts:
            sender.sendline(f"send_group {text}")
            sender.expect_line(">>> (g) Message received by Server.", timeout=20)
        for proc in members:
            for text in texts:
                proc.expect(rf"^>>> \(g\) Group_Message A: {text}$", timeout=20, flags=re.MULTILINE)
        cluster.stop_all()
    finally:
        assert proxy.stop() == 0
    for proc in members:
        shown = [line for line in proc.text.split("\n") if line.startswith(">>> (g) Group_Message A: ")]
        assert shown == [f">>> (g) Group_Message A: {text}" for text in texts], proc.label  # each once, in order
        assert "not responsive" not in server.text
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    by_rule = {n: [r for r in rows if r["rule"] == n] for n in (1, 2, 3)}
    drops = [r for r in by_rule[1] if r["action"] == "drop"]
    assert drops, "the loss model never dropped"
    to_b = [r["action"] for r in rows if r["type"] == "grp_msg" and r["to"] == "B"]
    assert set(to_b) <= {"drop", "rate"} and len(to_b) >= len(texts)  # what the model keeps goes on to the next rule
    assert all(r["action"] == "delay" and r.get("delay", 0.0) >= 0 for r in by_rule[2]) and by_rule[2]
    assert {r["action"] for r in by_rule[3]} <= {"rate", "drop"} and by_rule[3]
    assert all(r["from"] == "server" and r.get("delay", 0) > 0 for r in by_rule[3] if r["action"] == "rate")
    for drop in drops:  # each lost group message was sent again until a try got through
        assert any(r["action"] != "drop" and (r["to"], r["id"]) == (drop["to"], drop["id"]) for r in rows[rows.index(drop):])
    assert "counts per rule" in proxy.stderr and "Traceback" not in proxy.stderr
