"""The chat nodes: protocol logic without I/O (server.py, client.py, reliable.py) and the
asyncio shell that drives it (runtime.py, terminal.py)."""
