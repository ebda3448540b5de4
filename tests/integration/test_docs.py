"""The documentation against what it documents: the generated protocol reference in
docs/protocol.md, the spec's commands, the command-line flags and the quick start in README.md, the
README's length and table of contents, and every relative link in README.md and docs/*.md."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ChatApp import build_parser
from proto import MSG_TYPES, PAYLOADS, STATUSES, ChatHeader
from proto.codec import HEADER_MIN
from proto.reference import BEGIN, DOCUMENT, END, REGENERATE, extract, generate, replace

from tests.procs import ROOT  # the checkout, wherever in tests/ this file sits
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROTOCOL = (ROOT / DOCUMENT).read_text(encoding="utf-8")


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


def test_the_documented_protocol_reference_matches_the_layer():
    assert PROTOCOL.count(BEGIN) == 1 and PROTOCOL.count(END) == 1, "protocol reference markers missing or repeated"
    assert extract(PROTOCOL) == generate(), f"{DOCUMENT}'s protocol reference is out of date; regenerate it with: {REGENERATE}"


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


# -- the README's shape, and the links between the documents ----------------------------------------

README_MAX_LINES = 400  # a user's document, read in ten minutes; the long guides live in docs/


def _outside_code(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans, where brackets and ``#`` are not markdown."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown text: lower case, punctuation dropped,
    spaces as hyphens, a repeated one numbered (``-1``, ``-2``)."""
    seen: dict[str, int] = {}
    anchors = set()
    for title in re.findall(r"^#{1,6} +(.+?) *#*$", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(text: str) -> list[str]:
    """The targets of a markdown text's links and images, outside code."""
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", _outside_code(text))


def _broken_links(document: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for target in _links(document.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto: are not ours to check here
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(root)}")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(root)}")
    return broken


def test_the_readme_is_at_most_400_lines():
    assert len(README.splitlines()) <= README_MAX_LINES, f"README.md has {len(README.splitlines())} lines: move long text to docs/"


def test_the_readme_opens_with_a_table_of_contents_that_reaches_every_section():
    headings = re.findall(r"^## (.+)$", _outside_code(README), re.M)
    assert headings[0] == "Contents", f"the first section is {headings[0]!r}, not the table of contents"
    toc = section("Contents")
    targets = _links(toc)
    assert targets and all(t.startswith("#") for t in targets), targets
    anchors = _anchors(README)
    assert [t for t in targets if t[1:] not in anchors] == [], "table of contents links to no heading"
    linked = {t[1:] for t in targets}
    missing = [h for h in headings[1:] if _anchors(f"## {h}").pop() not in linked]
    assert missing == [], f"sections the table of contents does not list: {missing}"


def test_the_readme_links_every_document_in_docs():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _links(README) if not re.match(r"[a-z]+:|#", t)}
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == [], f"documents in docs/ that README.md does not link: {unlinked}"


@pytest.mark.parametrize("document", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))])
def test_every_relative_link_reaches_a_file_and_heading_that_exist(document):
    assert _broken_links(ROOT / document) == []


def test_the_link_check_sees_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading: yes\n", encoding="utf-8")
    page.write_text("# Page\n\n[ok](other.md#a-code-heading-yes) [self](#page) `[not a link](nowhere.md)`\n"
                    "[gone](gone.md) [bad](other.md#nothing) ![img](pic.svg)\n```\n[in code](nowhere.md)\n```\n",
                    encoding="utf-8")
    broken = _broken_links(page, tmp_path)
    assert [b.split(":")[0] for b in broken] == ["gone.md", "other.md#nothing", "pic.svg"], broken
