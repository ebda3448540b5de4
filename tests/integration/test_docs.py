"""README.md against what it documents: the generated protocol reference, the
spec's commands, the command-line flags and the quick start."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ChatApp import build_parser
from proto import MSG_TYPES, PAYLOADS, STATUSES, ChatHeader
from proto.codec import HEADER_MIN
from proto.reference import BEGIN, END, REGENERATE, extract, generate, replace

from tests.procs import ROOT  # the checkout, wherever in tests/ this file sits
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the README's ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def find_spec() -> Path | None:
    """SPEC.md is kept beside the repository in the shared workspace; CHATAPP_SPEC overrides."""
    candidates = [os.environ.get("CHATAPP_SPEC"), ROOT / "SPEC.md", ROOT / "docs" / "SPEC.md", ROOT.parent / "shared" / "SPEC.md"]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


# -- the generated protocol reference ----------------------------------------------------------


def test_readme_protocol_reference_matches_the_layer():
    assert README.count(BEGIN) == 1 and README.count(END) == 1, "protocol reference markers missing or repeated"
    assert extract(README) == generate(), f"README.md's protocol reference is out of date; regenerate it with: {REGENERATE}"


def test_reference_describes_every_type_status_and_field():
    text = generate()
    for code, name in MSG_TYPES.items():
        payload = PAYLOADS.get(name)
        expected = f"| {code} | `{name}` | " + (f"`{payload.__name__}`" if payload else "none")
        assert expected in text, f"message type row for {name}"
    for code, name in STATUSES.items():
        assert f"| {code} | `{name}` |" in text
    for layer in (ChatHeader, *PAYLOADS.values()):
        for field in layer.fields_desc:
            assert f"| `{field.name}` |" in text, f"{layer.__name__}.{field.name}"
    # The last header field (the name) starts where the codec's fixed minimum ends.
    assert f"| {HEADER_MIN} | `{ChatHeader.fields_desc[-1].name}` |" in text


def test_replace_rewrites_only_the_marked_section():
    document = f"intro\n{BEGIN}\nold text\n{END}\noutro\n"
    updated = replace(document, "new text\n")
    assert updated.startswith("intro\n") and updated.endswith(f"{END}\noutro\n")
    assert extract(updated) == "new text\n"
    with pytest.raises(ValueError):
        extract("no markers here")


# -- the user guide ---------------------------------------------------------------------------------


def spec_commands(spec: str) -> list[str]:
    """The backticked forms in the first column of the spec's client-command table."""
    match = re.search(r"^## Client commands\n(.*?)(?=^## |\Z)", spec, re.M | re.S)
    assert match, "SPEC.md has no '## Client commands' section"
    forms = []
    for line in match.group(1).splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.split("|")[1]
            forms += re.findall(r"`([^`]+)`", first)
    return forms


def test_every_spec_command_is_in_the_user_guide():
    spec = find_spec()
    if spec is None:
        pytest.skip("SPEC.md not found (set CHATAPP_SPEC to its path)")
    forms = spec_commands(spec.read_text(encoding="utf-8"))
    assert len(forms) >= 8, f"too few commands parsed from {spec}: {forms}"
    guide = section("User guide")
    for form in forms:
        word = form.split()[0]
        assert f"`{form}`" in guide, f"user guide lacks the form `{form}` from {spec}"
        # ... and an example of it being typed, in group mode or not
        assert re.search(rf"^>>> (\(\S+\) )?{re.escape(word)}\b", guide, re.M), f"user guide has no example of {word}"


def test_flags_in_the_user_guide_exist_with_the_documented_defaults():
    options = {opt: action for action in build_parser()._actions for opt in action.option_strings}
    guide = section("User guide")
    mentioned = {flag for code in re.findall(r"`([^`]+)`", guide) for flag in re.findall(r"(?<!\S)--[a-z][a-z-]*", code)}
    assert {"--ack-timeout", "--retries", "--bind", "--no-color", "--demo"} <= mentioned
    for flag in mentioned:
        assert flag in options, f"the user guide mentions {flag}, which ChatApp.py does not accept"
    for flag, default in re.findall(r"^\| `(--[a-z-]+) [A-Z]+` \| `([^`]+)` \|", guide, re.M):
        assert str(options[flag].default) == default, f"{flag}: documented default {default}"


def test_quick_start_is_the_two_dev_commands():
    block = re.search(r"```sh\n(.*?)```", section("Quick start"), re.S)
    assert block, "Quick start has no sh block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["./dev demo", "./dev test"]
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    assert re.search(r"^\s*demo\)", dev, re.M) and re.search(r"^\s*test\)", dev, re.M)
