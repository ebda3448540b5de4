"""Names, group names and messages from the network are shown as data, end to end:
real processes in pseudo-terminals, where tables are drawn with rich."""

from __future__ import annotations


# Names a server accepts that rich reads as markup: '[/]' raised MarkupError wherever a table was
# drawn; the link became an OSC 8 hyperlink; '[b][/b]Ann' read as 'Ann'.
SLASH, ANN, BOB = "[/]", "[b][/b]Ann", "[link=http://x]Bob[/link]"
GROUP = "[/]"
# A hyperlink, a screen wipe, a bidi override and markup, typed as a message.
MESSAGE = "see \x1b]8;;http://evil\x1b\\here\x1b]8;;\x1b\\ \x1b[2J\u202eabc [b]x[/b]"
SHOWN = "see \\x1b]8;;http://evil\\x1b\\here\\x1b]8;;\\x1b\\ \\x1b[2J\\u202eabc [b]x[/b]"


def test_markup_names_and_control_sequences_are_shown_as_data(cluster):
    server = cluster.server()
    slash, bob = cluster.clients([SLASH, BOB], server)
    ann = cluster.client(ANN, server, interactive=True)  # prompt_toolkit's screen, too
    everyone = {SLASH: "online", ANN: "online", BOB: "online"}
    for proc in (slash, ann, bob):
        proc.expect_clients(everyone, since=0)
    server.expect_clients(everyone, since=0)

    slash.sendline(f"send {BOB} {MESSAGE}")
    slash.expect_line(f">>> Message received by {BOB}.")
    bob.expect_line(f">>> {SLASH}: {SHOWN}")

    slash.sendline(f"create_group {GROUP}")
    slash.expect_line(f">>> Group {GROUP} created by Server.")
    server.expect_line(f">>> Client {SLASH} created group {GROUP} successfully")
    for proc, name in ((slash, SLASH), (ann, ANN), (bob, BOB)):
        proc.sendline(f"join_group {GROUP}")
        proc.expect_line(f">>> Entered group {GROUP} successfully")
        server.expect_line(f">>> Client {name} joined group {GROUP}")
    server.expect_groups({GROUP: [SLASH, ANN, BOB]})
    bob.sendline(f"send_group {MESSAGE}")
    bob.expect_line(f">>> ({GROUP}) Message received by Server.")
    for proc in (slash, ann):
        proc.expect_line(f">>> ({GROUP}) Group_Message {BOB}: {SHOWN}")

    # The server's table updates still reach every client: a newcomer is known to all.
    cluster.client("Dan", server)
    for proc in (slash, ann, bob, server):
        proc.expect_clients({**everyone, "Dan": "online"})

    for proc in (server, slash, ann, bob):
        assert "Traceback" not in proc.text and "MarkupError" not in proc.text, proc.text
        assert "\x1b]8;" not in proc.raw and "\u202e" not in proc.raw, proc.label  # no hyperlink, no bidi override
