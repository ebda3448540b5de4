"""Reading the pixels of a PNG as librsvg writes it (8-bit RGB or RGBA, not interlaced), so that
a test can look at what a renderer drew without an imaging library."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_CHANNELS = {2: 3, 6: 4}  # PNG colour type: RGB, RGBA


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows), each row ``width * 4`` bytes of RGBA (alpha 255 added to RGB)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in _CHANNELS and not interlace, f"unsupported PNG: {header}"
    step = _CHANNELS[colour]
    raw = zlib.decompress(b"".join(chunks))
    stride = width * step
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up = previous[i]
            corner = previous[i - step] if i >= step else 0
            line[i] = (line[i] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(bytes(line) if step == 4 else b"".join(bytes(line[i:i + 3]) + b"\xff" for i in range(0, stride, 3)))
        previous = line
    return width, height, rows


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    """The PNG filter's prediction for one byte (filter types 0-4)."""
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    guess = left + up - corner  # Paeth
    near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
    return near[2]
