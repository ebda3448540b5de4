"""The table of message types (proto/messages.py) against the layer, and what is made of it:
the list of exchanges in docs/protocol.md, kept up to date like the protocol reference."""

from __future__ import annotations

import re

from proto import MSG_TYPES, PAYLOADS, ChatHeader, ListMore
from proto.chat import _Answer
from proto.fields import layer_spec
from proto.messages import ANSWERS, ANY, BY_NAME, CLIENT, FAMILIES, IN_PARTS, MESSAGES, OPENS_SESSION, SERVER, received_by, requests
from proto.reference import DOCUMENT, EXCHANGES_BEGIN, EXCHANGES_END, REGENERATE, exchanges, extract, main
from tests.procs import ROOT

PROTOCOL = ROOT / DOCUMENT


def test_every_type_of_the_layer_has_one_row():
    assert len({m.code for m in MESSAGES}) == len({m.name for m in MESSAGES}) == len(MESSAGES)
    assert {m.code: m.name for m in MESSAGES} == MSG_TYPES == layer_spec(ChatHeader).field("type").enum


def test_the_answers_are_the_types_whose_payload_answers_a_request():
    assert ANSWERS == {name for name, layer in PAYLOADS.items() if issubclass(layer, _Answer)}
    for m in MESSAGES:
        assert m.sender in (CLIENT, SERVER, ANY) and m.receiver in (CLIENT, SERVER, ANY), m
        assert m.answer is None or m.answer in ANSWERS, f"{m.name} is answered by {m.answer}, which answers nothing"
        assert m.family in FAMILIES and m.name in FAMILIES[m.family]


def test_an_answer_goes_back_the_way_its_request_came():
    for m in MESSAGES:
        if m.answer is not None:
            answer = BY_NAME[m.answer]
            assert answer.sender in (m.receiver, ANY) and answer.receiver in (m.sender, ANY), m


def test_the_requests_answered_in_parts_are_the_ones_list_more_continues():
    assert IN_PARTS, "list requests exist"
    assert layer_spec(ListMore).field("list").enum == {BY_NAME[name].code: name for name in IN_PARTS}
    for name in IN_PARTS:
        answer = layer_spec(PAYLOADS[BY_NAME[name].answer])
        assert any(f.item is not None for f in answer.fields), f"{name}'s answer carries no list"
    assert "list_more" in requests(CLIENT, SERVER)


def test_documented_exchanges_match_the_table():
    document = PROTOCOL.read_text(encoding="utf-8")
    assert document.count(EXCHANGES_BEGIN) == 1 and document.count(EXCHANGES_END) == 1
    assert extract(document, EXCHANGES_BEGIN, EXCHANGES_END) == exchanges(), f"regenerate: {REGENERATE}"


def test_the_exchanges_name_every_request_once_on_its_path():
    block = exchanges()
    for m in MESSAGES:
        if m.answer is None:
            continue
        lines = [line for line in block.splitlines() if re.search(rf"(?<!\w){m.name}(?!\w)", line)]
        assert len(lines) == 1, (m.name, lines)
    for sender, receiver in ((CLIENT, SERVER), (SERVER, CLIENT), (CLIENT, CLIENT)):
        assert f"{sender} -> {receiver}" in block


def test_check_fails_on_a_stale_exchanges_block_and_update_mends_it(tmp_path, capsys):
    stale = PROTOCOL.read_text(encoding="utf-8").replace(exchanges().rstrip("\n"), "```text\nclient -> server   reg\n```")
    copy = tmp_path / "protocol.md"
    copy.write_text(stale, encoding="utf-8")
    assert main(["--check", str(copy)]) == 1
    assert "exchanges out of date" in capsys.readouterr().err
    assert main(["--update", str(copy)]) == 0
    assert main(["--check", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == PROTOCOL.read_text(encoding="utf-8")


def test_check_and_update_without_a_file_mean_docs_protocol_md(tmp_path, monkeypatch, capsys):
    """``python -m proto.reference --check`` from the checkout checks docs/protocol.md; the markers
    name the command that regenerates it."""
    assert DOCUMENT == "docs/protocol.md" and REGENERATE.endswith(f"--update {DOCUMENT}") and REGENERATE in EXCHANGES_BEGIN
    monkeypatch.chdir(ROOT)
    assert main(["--check"]) == 0
    (tmp_path / "docs").mkdir()
    (tmp_path / DOCUMENT).write_text("no markers\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["--update"]) == 1 and "docs/protocol.md: markers not found" in capsys.readouterr().err


def test_each_logic_handles_every_request_its_role_receives():
    """The handlers are found by name from the table: a new request type a node receives fails
    here, at construction, until its ``_on_<type>`` is written (and a command until its ``_do_<word>``)."""
    from node.client import ClientLogic
    from node.commands import GRAMMAR
    from node.server import ServerLogic

    client = ClientLogic("Ann", ("127.0.0.1", 9))
    server = ServerLogic()
    assert set(client._receivers) == received_by(CLIENT) == {"table", "grp_msg", "probe", "pri_msg"}
    assert set(server._handlers) == received_by(SERVER) and OPENS_SESSION == {"reg", "confirm"} < received_by(SERVER)
    assert {form.command for form in GRAMMAR.values()} == set(client._performers)
