"""tools/sniff.py as a process: made-up captures, then real captures on lo while real ChatApp.py
processes chat, directly and through the lossy proxy.  The traffic model it shows is tested
in-process in tests/unit/test_traffic.py.

The live captures run once per test session (fixtures ``direct`` and ``proxied``, in
tests/conftest.py, recorded by tests/captures.py); the tests read what they left: the
sniffer's own output and its pcap, read again with -r in every output mode.
test_replay.py and test_wireshark.py use them too.  A third capture, ``hostile`` (names that look
like markup, escape sequences), is recorded at the end of this module for the tests after it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from proto import MSG_TYPES, VERSION, Ack, ChatHeader, PriMsg, RegAck, Table, decode
from tests.captures import SNIFF, Capture, Processes, needs_root, run_into_closed_pipe, run_tool
from tests.png import read_png
from tests.procs import CHATAPP, HOST, PYTHON, ROOT, ProxyThread, free_port, quiet_port

pytestmark = pytest.mark.e2e  # sniff.py as a process, on made-up and live captures


def packet_lines(lines: list[str]) -> list[str]:
    """The per-datagram lines: those that start with the relative time, before the end-of-capture report."""
    shown = lines[: lines.index("")] if "" in lines else lines
    return [text for text in shown if re.match(r"^\s+\d+\.\d{3} ", text)]


def json_records(pcap: Path) -> list[dict]:
    """The per-datagram objects of --json (the end-of-capture objects have no "data")."""
    records = [json.loads(text) for text in run_tool(SNIFF, "-r", str(pcap), "--json").stdout.splitlines()]
    return [r for r in records if "data" in r]


def find(lines: list[str], *patterns: str) -> list[int]:
    """Indexes of the lines matching each pattern in turn, each after the previous one."""
    found, start = [], 0
    for pattern in patterns:
        for i in range(start, len(lines)):
            if re.search(pattern, lines[i]):
                found.append(i)
                start = i + 1
                break
        else:
            raise AssertionError(f"no line /{pattern}/ after line {start}:\n" + "\n".join(lines))
    return found


# -- live capture -------------------------------------------------------------------------------------


@needs_root
def test_a_second_client_claiming_a_registered_name_is_shown_by_its_address(tmp_path):
    """Ann registers; a second real client, also called Ann, tries from another port and is refused.
    Every view names the second one by its address and shows the name it claimed as a claim."""
    pcap = tmp_path / "claim.pcap"
    ports = {"server": quiet_port(), "Ann": quiet_port(), "other": quiet_port()}
    procs = Processes()
    try:
        sniff = procs.sniffer(pcap, list(ports.values()))
        procs.server(ports["server"])
        procs.client("Ann", ports["server"], ports["Ann"])
        other = procs.start([CHATAPP, "-c", "Ann", HOST, str(ports["server"]), str(ports["other"]), "--bind", HOST],
                            "second Ann")
        other.wait_for(r"Someone has already used this name")
        sniff.wait_for(r"ack .*name_taken")  # to its confirm, once the server's probe of Ann was answered
        assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
    finally:
        procs.stop_all()
    other_at = f"{HOST}:{ports['other']}"
    lines = packet_lines(run_tool(SNIFF, "-r", str(pcap)).stdout.splitlines())
    find(lines, r"^\s+\S+ Ann → server +reg ", rf"^\s+\S+ {re.escape(other_at)} \(claims Ann\) → server +reg ",
         rf"server → {re.escape(other_at)} +ack .*name_taken")
    assert not [text for text in lines if re.search(r"Ann → \S+ +reg ", text) and other_at in text], lines
    records = json_records(pcap)
    theirs = [r for r in records if r["src"] == other_at]
    assert theirs and all((r["from"], r["claimed"]) == (other_at, "Ann") for r in theirs), theirs
    assert all(r["claimed"] is None for r in records if r["src"] == f"{HOST}:{ports['Ann']}")
    stats = run_tool(SNIFF, "-r", str(pcap), "--stats").stdout
    assert re.search(rf"^\s+{re.escape(other_at)}\s+Ann\s+{len(theirs)}\s*$", stats, re.MULTILINE), stats
    ladder = run_tool(SNIFF, "-r", str(pcap), "--ladder").stdout.splitlines()
    assert sorted(ladder[0].split()) == sorted(["Ann", "server", other_at]), ladder[0]
    assert any("(claims Ann)" in row for row in ladder), ladder


@needs_root
def test_live_capture_shows_the_conversation_with_names_and_matched_acks(direct):
    lines = packet_lines(direct.lines)
    find(
        lines,
        r"Ann → server +reg +#\d+",
        r"server → Ann +reg_ack +#\d+ +ok +↩ reg #\d+ rtt \d+\.\d\d ms",
        r"server → Ann +table .*Ann 127\.0\.0\.1:",
        r"Bob → server +reg ",
        r"Ann → Bob +pri_msg +#\d+ +'hello; there'",
        r"Bob → Ann +ack +#\d+ +ok +↩ pri_msg #\d+ rtt \d+\.\d\d ms",
        r"Bob → server +create_group .*'g1'",
        r"Ann → server +send_group .*'g1': 'hi all'",
        r"server → Bob +grp_msg .*'g1' from Ann: 'hi all'",
        r"Bob → server +ack .*↩ grp_msg #\d+ rtt",
        r"Ann → server +dereg ",
    )
    assert not any(re.search(r"\d+\.\d+\.\d+\.\d+:\d+ →|→ \d+\.\d+\.\d+\.\d+:\d+", text) for text in lines), lines
    assert not any("unanswered" in text for text in direct.lines)


@needs_root
def test_each_datagram_is_shown_once(direct):
    lines = packet_lines(direct.lines)
    assert not [text for text in lines if "retry" in text or "relayed" in text]
    assert len([text for text in lines if re.search(r"→ \S+ +pri_msg ", text)]) == 1
    assert len([text for text in lines if re.search(r"→ \S+ +grp_msg ", text)]) == 1
    records = json_records(direct.pcap)
    datagrams = [(r["src"], r["dst"], r["data"]) for r in records]
    assert len(datagrams) == len(set(datagrams)) == len(lines)


@needs_root
def test_reading_the_pcap_prints_what_the_live_capture_printed(direct):
    assert run_tool(SNIFF, "-r", str(direct.pcap)).stdout.splitlines() == direct.lines


@needs_root
def test_json_lines_carry_the_layer_fields(direct):
    records = json_records(direct.pcap)
    assert {r["type"] for r in records} >= {"reg", "reg_ack", "table", "ack", "pri_msg", "grp_msg", "dereg"}
    for rec in records:
        pkt = decode(bytes.fromhex(rec["data"]))
        assert rec["type"] == MSG_TYPES[pkt.type] and rec["id"] == pkt.msg_id
        assert set(rec["header"]) == {f.name for f in pkt.fields_desc}
        assert rec["header"]["sender"] == pkt.sender and rec["header"]["token"] == pkt.token
        assert rec["header"]["type"] == MSG_TYPES[pkt.type]
        body = pkt.payload
        if rec["payload"] is None:
            assert not body.fields_desc
            continue
        assert rec["payload"]["layer"] == body.name
        assert set(rec["payload"]) - {"layer"} == {f.name for f in body.fields_desc}
        if isinstance(body, PriMsg):
            assert rec["payload"]["text"] == body.text == "hello; there"
        if isinstance(body, Table):
            assert [e["client"] for e in rec["payload"]["entries"]] == [e.client for e in body.entries]
        if isinstance(body, Ack):
            assert rec["answers"]["id"] == body.ack_id and rec["rtt_ms"] >= 0


@needs_root
def test_filters_choose_what_is_shown(direct):
    shown = run_tool(SNIFF, "-r", str(direct.pcap), "--type", "pri_msg", "--type", "ack", "--name", "Bob").stdout
    lines = packet_lines(shown.splitlines())
    assert lines and all(re.search(r"(Bob → \w+|\w+ → Bob) +(pri_msg|ack) ", text) for text in lines), lines
    assert any("↩ pri_msg" in text for text in lines)  # matched although the request is filtered out
    counted = packet_lines(run_tool(SNIFF, "-r", str(direct.pcap), "--count", "3").stdout.splitlines())
    assert len(counted) == 3
    dumped = run_tool(SNIFF, "-r", str(direct.pcap), "--count", "1", "--hexdump").stdout.splitlines()
    assert re.match(rf"0000  C4 A7 {VERSION:02X} 01 ", dumped[1]), dumped  # magic, version, type reg


@needs_root
def test_stats_count_types_nodes_and_round_trips(direct):
    out = run_tool(SNIFF, "-r", str(direct.pcap), "--stats").stdout
    assert "packets per type" in out and "packets per node" in out
    for name in ("Ann", "Bob", "server"):
        assert re.search(rf"^\s+{name}\s+\d+\s+\d+\s*$", out, re.MULTILINE), out
    assert re.search(r"retransmissions 0, unanswered 0, rtt median \d+\.\d\d ms, p99 \d+\.\d\d ms", out), out


@needs_root
def test_ladder_and_svg_show_every_node(direct, tmp_path):
    svg = tmp_path / "ladder.svg"
    out = run_tool(SNIFF, "-r", str(direct.pcap), "--ladder", "--svg", str(svg)).stdout
    header = out.splitlines()[0]
    assert header.split() == ["Ann", "server", "Bob"]
    assert re.search(r"│─+ pri_msg 'hello; there' ─+▶│", out), out
    text = "".join(ET.parse(svg).getroot().itertext()).replace("\xa0", " ")
    for name in ("Ann", "Bob", "server"):
        assert name in text


@needs_root
def test_retries_through_the_lossy_proxy(proxied):
    lines = packet_lines(proxied.lines)
    first, _, _, ack = find(
        lines,
        r"Ann → Bob +pri_msg +#(\d+) +'hello'$",
        r"Ann → Bob +pri_msg .*'hello'  retry 1$",
        r"Ann → Bob +pri_msg .*'hello'  retry 2$",
        r"Bob → Ann +ack .*↩ pri_msg #\d+ retry 2 rtt \d+\.\d\d ms",
    )
    msg_id = re.search(r"#(\d+)", lines[first]).group(1)
    assert f"↩ pri_msg #{msg_id} retry 2" in lines[ack]


@needs_root
def test_proxy_drops_end_in_a_cross_on_the_ladder(proxied, tmp_path):
    svg = tmp_path / "ladder.svg"
    out = run_tool(SNIFF, "-r", str(proxied.pcap), "--ladder", "--proxy-log", str(proxied.log), "--svg", str(svg)).stdout
    crossed = [text for text in packet_lines(out.splitlines()) if "✕" in text]
    assert len(crossed) == 2 and "pri_msg 'hello' dropped" in crossed[0] and "(retry 1)" in crossed[1], out
    assert re.search(r"pri_msg 'hello' \(retry 2\) ─+▶│", out), out
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "✕" in "".join(root.itertext())


def test_the_documented_ladder_is_drawn_from_the_demo_capture():
    docs = ROOT / "docs"
    out = run_tool(SNIFF, "-r", str(docs / "demo.pcap"), "--ladder", "--proxy-log", str(docs / "demo-proxy.jsonl")).stdout
    assert out.count("✕") >= 2 and "(retry 2)" in out
    svg = ET.parse(docs / "ladder.svg").getroot()
    drawn = "".join(svg.itertext()).replace("\xa0", " ")
    assert "".join(out.split()) in "".join(drawn.split()), "docs/ladder.svg is out of date: see docs/sniffer.md, Ladder diagrams"


def _svg_ladder(tmp_path) -> Path:
    svg = tmp_path / "ladder.svg"
    docs = ROOT / "docs"
    run_tool(SNIFF, "-r", str(docs / "demo.pcap"), "--proxy-log", str(docs / "demo-proxy.jsonl"), "--svg", str(svg))
    return svg


def test_the_svg_ladder_loads_nothing_and_names_fonts_a_machine_has(tmp_path):
    text = _svg_ladder(tmp_path).read_text(encoding="utf-8")
    style = "".join(ET.fromstring(text).find("{http://www.w3.org/2000/svg}style").itertext())
    assert "@font-face" not in style and "@import" not in style, style
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", text), "the SVG loads something from the network"
    families = re.findall(r"font-family:\s*([^;]+);", style)
    assert families and all(family.rstrip().endswith(("monospace", "sans-serif")) for family in families), families
    assert any("DejaVu Sans Mono" in family for family in families), families
    # Each run of text is placed by its column and stretched to its cells: columns line up in any font.
    texts = ET.fromstring(text).iter("{http://www.w3.org/2000/svg}text")
    assert all(t.get("textLength") and t.get("x") for t in texts if (t.text or "").strip() and "title" not in t.get("class", ""))


def test_the_svg_ladder_renders_offline_with_librsvg_and_its_columns_line_up(tmp_path):
    """Rendered by librsvg (as an image viewer would), every lifeline is drawn where its column is:
    at the same x on every row, under its name.  (librsvg collapses the spaces that place them unless
    the SVG says to keep them.)"""
    rsvg = shutil.which("rsvg-convert") or pytest.skip("rsvg-convert is not installed (librsvg2-bin)")
    svg, png = _svg_ladder(tmp_path), tmp_path / "ladder.png"
    done = subprocess.run([rsvg, "-o", str(png), str(svg)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and png.stat().st_size > 0, done.stderr
    grid, cell, left = _svg_grid(svg)
    rows = sorted(grid)
    lifelines = [c for c in range(max(len(line) for line in grid.values()))
                 if sum(grid[y].get(c) == "│" for y in rows) > len(rows) // 2]
    assert len(lifelines) == 3, lifelines  # Ann, server, Bob in the demo capture
    width, _, pixels = read_png(png)
    middle = pixels[int(rows[len(rows) // 2])]
    background = Counter(middle[i:i + 3] for i in range(0, 4 * width, 4)).most_common(1)[0][0]

    def ink(x: float, y: float) -> bool:
        """Anything but background within a pixel of x, halfway up the line of text whose baseline is y."""
        row = pixels[int(y - cell)]
        return any(max(abs(a - b) for a, b in zip(row[4 * px:4 * px + 3], background)) > 40
                   for px in range(int(x) - 1, int(x) + 2))

    misplaced = [(column, y) for column in lifelines for y in rows
                 if grid[y].get(column) == "│" and not ink(left + (column + 0.5) * cell, y)]
    assert not misplaced, f"{len(misplaced)} lifeline cells drawn elsewhere, e.g. (column, y) {misplaced[:5]}"


def _svg_grid(svg: Path) -> tuple[dict[float, dict[int, str]], float, float]:
    """The terminal's characters by line (the baseline's y in the image) and column, the cell width and
    the terminal's left edge in the image, from rich's SVG: each <text> is a run of cells starting at
    x, ``textLength`` wide."""
    grid: dict[float, dict[int, str]] = {}
    cell, left, top = 0.0, 0.0, 0.0
    for group in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}g"):
        if "clip-terminal" in group.get("clip-path", ""):  # the terminal, placed inside the window
            left, top = map(float, re.fullmatch(r"translate\((.*),(.*)\)", group.get("transform")).groups())
            break
    for text in group.iter("{http://www.w3.org/2000/svg}text"):
        if not text.text:
            continue
        cell = cell or float(text.get("textLength")) / len(text.text)
        first = round(float(text.get("x")) / cell)
        line = grid.setdefault(top + float(text.get("y")), {})
        line.update((first + i, char) for i, char in enumerate(text.text))
    return grid, cell, left


# -- the command line --------------------------------------------------------------------------------


def test_user_mistakes_get_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "not.pcap"
    bad.write_text("hello\n")
    for args, status, message in [
        (["-r", str(tmp_path / "missing.pcap")], 1, "cannot read"),
        (["-r", str(bad)], 1, "cannot read"),
        (["-i", "nosuch0"], 1, "no such interface 'nosuch0'"),
        (["--type", "bogus"], 2, "invalid choice: 'bogus'"),
        (["--count", "0"], 2, "not a positive number"),
        (["-r", str(bad), "--proxy-log", "x.jsonl"], 2, "--proxy-log draws on the ladder"),
    ]:
        done = run_tool(SNIFF, *args, check=False)
        assert done.returncode == status and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping CAP_NET_RAW needs root")
def test_without_raw_socket_rights_it_says_so():
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-net_raw", PYTHON, SNIFF, "--count", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and "needs root" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("output", [[], ["--ladder"], ["--json", "--stats"]])
def test_a_closed_stdout_ends_quietly_and_the_files_asked_for_are_whole(tmp_path, output):
    """`sniff.py -r ... --svg X -w Y | head`: the reader leaves, the SVG and the pcap are still written
    in full (the same bytes as with a reader that stays), exit status 0, nothing on stderr."""
    demo = str(ROOT / "docs" / "demo.pcap")
    files = {kept: (tmp_path / f"{kept}.svg", tmp_path / f"{kept}.pcap") for kept in ("read", "closed")}
    run_tool(SNIFF, "-r", demo, *output, "--svg", str(files["read"][0]), "-w", str(files["read"][1]))
    done = run_into_closed_pipe(SNIFF, "-r", demo, *output, "--svg", str(files["closed"][0]), "-w", str(files["closed"][1]))
    assert (done.returncode, done.stderr) == (0, "")
    for read, closed in zip(*files.values()):
        assert closed.read_bytes() == read.read_bytes(), closed


@contextlib.contextmanager
def live_sniffer_into_closed_pipe(*args: str):
    """sniff.py capturing on lo, its stdout a pipe nobody reads; yields it once it captures, and a
    function that sends a chat datagram to a port only this test uses (the capture is limited to it)."""
    port = free_port()
    read, write = os.pipe()
    os.close(read)
    sniff = subprocess.Popen([PYTHON, SNIFF, "--port", str(port), *args], cwd=ROOT, stdout=write,
                             stderr=subprocess.PIPE, text=True)
    os.close(write)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert "capturing on lo" in sniff.stderr.readline()
        yield sniff, lambda msg_id: sender.sendto(bytes(header("reg", msg_id, "Ann", 7001)), (HOST, port))
    finally:
        sender.close()
        if sniff.poll() is None:
            os.kill(sniff.pid, signal.SIGKILL)
            sniff.wait()
        sniff.stderr.close()


@needs_root
def test_a_live_capture_whose_reader_left_goes_on_writing_its_pcap(tmp_path):
    pcap = tmp_path / "live.pcap"
    with live_sniffer_into_closed_pipe("-w", str(pcap)) as (sniff, send):
        for msg_id in range(1, 6):
            send(msg_id)
        deadline = time.monotonic() + 10
        while not (pcap.exists() and len(json_records(pcap)) == 5):
            assert time.monotonic() < deadline and sniff.poll() is None, f"stopped early ({sniff.poll()}), or lost some"
            time.sleep(0.1)
        os.kill(sniff.pid, signal.SIGINT)
        assert sniff.wait(10) == 0 and "Traceback" not in sniff.stderr.read()
    assert [r["id"] for r in json_records(pcap)] == [1, 2, 3, 4, 5]


@needs_root
def test_a_live_capture_whose_reader_left_stops_when_it_writes_no_file():
    with live_sniffer_into_closed_pipe() as (sniff, send):
        deadline = time.monotonic() + 10
        while sniff.poll() is None and time.monotonic() < deadline:  # datagrams until it has shown one
            send(1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                sniff.wait(0.1)
        assert sniff.poll() == 0, "still capturing, or failed"
        assert sniff.stderr.read() == ""


def test_help_names_every_option():
    out = run_tool(SNIFF, "--help").stdout
    for option in ("-i IFACE", "-r FILE.pcap", "-w FILE.pcap", "-f FILTER", "--type", "--name", "--count", "--timeout",
                   "--json", "--ladder", "--svg", "--stats", "--proxy-log", "--hexdump", "--wireshark-dissector"):
        assert option in out


# -- made-up captures, read by the sniffer as a process ---------------------------------------------

SERVER, ANN, BOB = (HOST, 6000), (HOST, 7001), (HOST, 7002)


def header(kind: str, msg_id: int, sender: str, port: int) -> ChatHeader:
    return ChatHeader(type=kind, msg_id=msg_id, sender=sender, port=port)


def made_capture(path: Path, datagrams: list[tuple[float, tuple, tuple, bytes]]) -> str:
    """A pcap of (seconds, source, destination, bytes) datagrams."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    frames = []
    for when, src, dst, data in datagrams:
        frame = Ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data
        frame.time = 1_700_000_000 + when
        frames.append(frame)
    wrpcap(str(path), frames)
    return str(path)


def test_a_long_capture_saves_its_ladder_in_pages(tmp_path):
    """Two minutes of chat, a message a second: the SVG ladder is cut into pages, each readable alone."""
    pcap = made_capture(tmp_path / "long.pcap", [
        (float(i), ANN, BOB, bytes(header("pri_msg", i, "Ann", ANN[1]) / PriMsg(text=f"message {i}")))
        for i in range(120)
    ])
    svg = tmp_path / "ladder.svg"
    done = run_tool(SNIFF, "-r", pcap, "--svg", str(svg))
    pages = [svg, tmp_path / "ladder-2.svg"]
    assert set(tmp_path.glob("ladder*.svg")) == set(pages)
    assert done.stderr.strip() == f"sniff.py: the ladder has 2 pages: {svg}, {pages[1]}", done.stderr
    for n, page in enumerate(pages, 1):
        drawn = "".join(ET.parse(page).getroot().itertext()).replace("\xa0", " ")
        assert f"page {n} of 2" in drawn and "Ann" in drawn and "127.0.0.1:7002" in drawn and "─▶ datagram" in drawn, drawn[:300]
        assert "'message 0'" in drawn if n == 1 else "'message 119'" in drawn


def test_the_report_tells_unanswered_requests_from_those_the_capture_cut_off(tmp_path):
    """Ann's reg gets no answer for a second: unanswered.  With --count 1 the capture ends right after
    it, before an answer could come: waiting, not unanswered."""
    pcap = made_capture(tmp_path / "made.pcap", [
        (0.0, ANN, SERVER, bytes(header("reg", 1, "Ann", ANN[1]))),
        (1.0, BOB, SERVER, bytes(header("reg", 2, "Bob", BOB[1]))),
        (1.001, SERVER, BOB, bytes(header("reg_ack", 9, "server", SERVER[1]) / RegAck(ack_id=2))),
    ])
    whole = run_tool(SNIFF, "-r", pcap, "--stats").stdout
    assert re.search(r"^unanswered requests: 1\n +0\.000 Ann → server  reg #1  1 try", whole, re.MULTILINE), whole
    assert "waiting" not in whole and "unanswered 1, rtt" in whole
    cut = run_tool(SNIFF, "-r", pcap, "--count", "1", "--stats").stdout
    assert re.search(r"^waiting for an answer when the capture ended: 1\n +0\.000 Ann → server  reg #1", cut, re.MULTILINE), cut
    assert "unanswered requests" not in cut and "unanswered 0, 1 waiting when the capture ended" in cut
    records = [json.loads(text) for text in run_tool(SNIFF, "-r", pcap, "--count", "1", "--json", "--stats").stdout.splitlines()]
    assert [r["waiting"]["id"] for r in records if "waiting" in r] == [1]
    assert not [r for r in records if "unanswered" in r] and records[-1]["stats"]["waiting"] == 1


def test_the_demo_cut_after_two_datagrams_has_no_unanswered_request():
    """The two hops of Ann's first reg, answered just after the cut-off."""
    out = run_tool(SNIFF, "-r", str(ROOT / "docs" / "demo.pcap"), "--count", "2").stdout
    assert "unanswered" not in out and "waiting for an answer when the capture ended: 2" in out, out


# -- text from the network: names and messages that look like markup or carry escape sequences ------------

SLASH, LINKED = "[/]", "[link=http://x]Bob[/link]"  # names a server accepts, which rich reads as markup
MESSAGE = "see \x1b]8;;http://evil\x1b\\here\x1b]8;;\x1b\\ \x1b[2J\u202eabc\x9b31m"  # hyperlink, wipe, bidi, C1 CSI
FORGED = "E\x1b]8;;http://x\x1b\\v"  # a stranger's sender field (no server would register it)
FORGED_SHOWN = "E\\x1b]8;;http://x\\x1b\\v"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Clients named SLASH and LINKED register through the lossy proxy and SLASH sends LINKED MESSAGE;
    a stranger sends the server a list_groups as FORGED, which the proxy drops; sniff.py captures it live."""
    if os.geteuid() != 0:
        pytest.skip("live capture on lo needs root (a raw packet socket)")
    folder = tmp_path_factory.mktemp("hostile")
    pcap, log = folder / "chat.pcap", folder / "proxy.jsonl"
    ports = {"server": quiet_port(), SLASH: quiet_port(), LINKED: quiet_port()}
    procs = Processes()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind((HOST, 0))
            ports["stranger"] = stranger.getsockname()[1]
            procs.server(ports["server"])
            with ProxyThread(server=(HOST, ports["server"]), log_path=str(log)) as proxy:
                ports["proxy"] = proxy.address[1]
                sniff = procs.sniffer(pcap, list(ports.values()))
                proxy.add_rule("drop type=list_groups")
                slash = procs.client(SLASH, ports["proxy"], ports[SLASH])
                linked = procs.client(LINKED, ports["proxy"], ports[LINKED])
                slash.wait_for(rf"^\s*{re.escape(LINKED)}\s")
                slash.type(f"send {LINKED} {MESSAGE}")
                slash.wait_for(rf"^>>> Message received by {re.escape(LINKED)}\.")
                linked.wait_for(rf"^>>> {re.escape(SLASH)}: see ")
                forged = header("list_groups", 7, FORGED, ports["stranger"])
                stranger.sendto(bytes(forged), proxy.address)
                sniff.wait_for(r" list_groups ")
                assert sniff.finish(signal.SIGINT) == 0, sniff.dump()
                procs.stop_all()
        return Capture(pcap, list(sniff.out), ports, log)
    finally:
        procs.stop_all()


def no_control_characters(out: str) -> bool:
    return all(ch.isprintable() for ch in out.replace("\n", ""))


def test_hostile_names_and_text_are_shown_literally_in_lines_and_stats(hostile):
    done = run_tool(SNIFF, "-r", str(hostile.pcap), "--stats", check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = done.stdout
    for printed in (out, "\n".join(hostile.lines)):  # read from the pcap, and as the live capture printed it
        assert no_control_characters(printed), printed
        lines = packet_lines(printed.splitlines())
        find(lines, rf"{re.escape(SLASH)} → server +reg ", rf"{re.escape(LINKED)} → server +reg ")
        sent = find(lines, rf"{re.escape(SLASH)} → {re.escape(LINKED)} +pri_msg ")[0]
        assert r"'see \x1b]8;;http://evil\x1b\\here" in lines[sent] and r"\u202eabc\x9b31m" in lines[sent], lines[sent]
        find(lines, rf"{re.escape(FORGED_SHOWN)} → server +list_groups +#7")
    for name in (SLASH, LINKED, FORGED_SHOWN):  # packets per node
        assert re.search(rf"^\s+{re.escape(name)}\s+\d+\s+\d+\s*$", out, re.MULTILINE), out


def test_json_of_hostile_text_is_terminal_safe_and_exact(hostile):
    out = run_tool(SNIFF, "-r", str(hostile.pcap), "--json").stdout
    assert no_control_characters(out), out
    records = [json.loads(text) for text in out.splitlines()]
    texts = [r["payload"]["text"] for r in records if r.get("type") == "pri_msg"]
    assert texts and set(texts) == {MESSAGE}
    assert FORGED in {r["header"]["sender"] for r in records if "header" in r}
    assert {SLASH, LINKED} <= {r["from"] for r in records if "from" in r}


def test_ladder_and_svg_show_hostile_names_literally_and_escaped(hostile, tmp_path):
    svg = tmp_path / "ladder.svg"
    out = run_tool(SNIFF, "-r", str(hostile.pcap), "--ladder", "--proxy-log", str(hostile.log), "--svg", str(svg)).stdout
    assert no_control_characters(out), out
    header_line = out.splitlines()[0]
    for name in (SLASH, LINKED, FORGED_SHOWN):
        assert name in header_line, header_line
    # The proxy logged the stranger's datagram under its raw name; it is matched and drawn dropped.
    dropped = [text for text in packet_lines(out.splitlines()) if "list_groups" in text]
    assert len(dropped) == 1 and "✕" in dropped[0] and "dropped" in dropped[0], out
    assert re.search(r"pri_msg 'see \\x1b\]8;;http://evil", out), out
    drawn = "".join(ET.parse(svg).getroot().itertext()).replace("\xa0", " ")
    for name in (SLASH, LINKED, FORGED_SHOWN):
        assert name in drawn
    assert no_control_characters(drawn)


# -- the kernel filter for --port -------------------------------------------------------------------


@needs_root
def test_the_port_filter_lets_only_those_ports_through_in_the_kernel():
    """Attached to a real packet socket on lo: datagrams from or to the chosen ports reach it once
    (no outgoing copy), other ports' datagrams never do, so another suite's traffic costs nothing."""
    from tools.bpf import attach_udp_ports
    from tools.sniff import open_live_socket

    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) for _ in range(3)]
        for s in sockets:
            s.bind((HOST, 0))
        watched, other, sender = sockets
        port = watched.getsockname()[1]
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        stack.callback(capture.close)
        capture.bind(("lo", 0))
        attach_udp_ports(capture, [port])
        while True:  # what arrived before the filter was attached
            capture.setblocking(False)
            try:
                capture.recv(65536)
            except BlockingIOError:
                break
        capture.settimeout(5)
        for payload, to in ((b"other-1", other), (b"to-watched", watched), (b"other-2", other), (b"end", watched)):
            sender.sendto(payload, to.getsockname())
        seen = []
        while not seen or seen[-1] != b"end":
            frame = capture.recv(65536)
            seen.append(frame[42:])  # Ethernet 14 + IPv4 20 + UDP 8
        assert seen == [b"to-watched", b"end"], seen
    sock = open_live_socket("lo", [port])  # the sniffer's own socket takes the same filter
    sock.close()
