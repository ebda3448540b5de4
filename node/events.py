"""What happened, as the protocol logic reports it: frozen dataclasses named for the
event (a message delivered, a member joined, the table changed), never wording.

The logic returns these from ``drain(now)`` beside the datagrams it sends; what a user
reads is made from them in one place, ``node/render.py``.  Fields hold values as they
came off the network (names, texts, list items): rendering escapes them, nothing here
does.  The idea is aioquic's ``quic/events.py`` and h11's ``_events.py``."""

from __future__ import annotations

from dataclasses import dataclass


# -- client events (node/client.py) -------------------------------------------------
#
# (the client's events go here)
#
# -- end of client events ------------------------------------------------------------


#
#
#


# -- server events (node/server.py) -------------------------------------------------
#
# (the server's events go here)
#
# -- end of server events ------------------------------------------------------------
