"""The scenarios of ``tools/bench.py`` and what they share: the processes they
start (the real server, a bare echo server), the simulated clients (many
``ClientLogic`` nodes on their own sockets), and the figures they report."""
