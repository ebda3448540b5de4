"""The lossy proxy's ``--map FILE``: which mirror port stands for which real endpoint, kept on disk so
that a restarted proxy opens the same ports again and its clients' sessions go on.

The file is JSON, rewritten whole (to a temporary file, then renamed: a proxy killed mid-write leaves
the old map, never half a map) when a mirror opens or a name is learned, never per datagram:

    {"listen": 7000, "mirrors": [{"real": "127.0.0.1:5001", "port": 40123, "name": "Ann"}]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

Address = tuple[str, int]


class MapError(ValueError):
    """A map file that cannot be read as one: the message says which file and why."""


@dataclass
class Mapped:
    real: Address
    port: int
    name: str | None


@dataclass
class MirrorMap:
    listen: int | None = None  # the port clients send to (the server's mirror)
    mirrors: list[Mapped] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # entries that make no sense, said as such


def _address(text) -> Address | None:
    host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    return (host, int(port)) if sep and host and port.isdigit() and 0 < int(port) < 65536 else None


def _port(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536 else None


def load(path: str) -> MirrorMap:
    """The map in ``path``; an empty one if there is no file yet (the first start)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return MirrorMap()
    except OSError as exc:
        raise MapError(f"cannot read the map {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MapError(f"the map {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mirrors", []), list):
        raise MapError(f'the map {path} is not {{"listen": PORT, "mirrors": [...]}}')
    result = MirrorMap(_port(data.get("listen")))
    for entry in data.get("mirrors", []):
        entry = entry if isinstance(entry, dict) else {}
        real, port, name = _address(entry.get("real")), _port(entry.get("port")), entry.get("name")
        if real is None or port is None or not isinstance(name, (str, type(None))):
            result.skipped.append(json.dumps(entry)[:200])
            continue
        result.mirrors.append(Mapped(real, port, name))
    return result


def save(path: str, listen: int, mirrors: list[Mapped]) -> None:
    """Write the map (atomically: a reader sees the old file or the new one)."""
    data = {
        "listen": listen,
        "mirrors": [{"real": f"{m.real[0]}:{m.real[1]}", "port": m.port, "name": m.name} for m in mirrors],
    }
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(temporary, path)
