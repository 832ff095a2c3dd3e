"""One sampling cycle's readings as one small blob: the row the buffer writes per durable commit.

Why (issue #22, docs/buffer.md "SD writes"): every fsynced commit costs one 4 KiB page of the WAL
plus every further page it touches. A row per reading spreads a cycle over the readings table's
leaf, the cycles table's leaf and, each time a leaf fills (every ~3 cycles), the table's interior
page and the file header: ~3.3 WAL frames per commit. One row per cycle touches one leaf, and a
512-byte leaf holds ~7 cycles, so ~1.3 frames.

Format: per reading ``varint(channel id)``, then ``varint(tag)``:
- ``tag & 1 == 0``: the value is the integer ``zigzag⁻¹(tag >> 2)`` (a count of the channel's
  resolution, ``encode_value``); ``tag & 2``: a ``varint(flags)`` follows;
- ``tag & 1 == 1``: ``tag >> 2`` is 0 for None, 1 for a float (8 bytes little-endian follow);
  ``tag & 2``: a ``varint(flags)`` follows (after the float).
A typical 15-channel cycle takes ~50 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from node.buffer.base import encode_value
from node.model import Sample

_DOUBLE = struct.Struct("<d")

Row = tuple[int, int | float | None, int]  # (channel id, stored value, flags)


def _varint(out: bytearray, x: int) -> None:
    while x > 0x7F:
        out.append((x & 0x7F) | 0x80)
        x >>= 7
    out.append(x)


def encode(rows: Sequence[Row]) -> bytes:
    """The blob of ``rows`` (stored values as ``encode_value`` gives them; ints, floats or None)."""
    out = bytearray()
    append = out.append
    for ch, value, flags in rows:
        if ch < 0x80:
            append(ch)
        else:
            _varint(out, ch)
        has_flags = 2 if flags else 0
        if type(value) is int:
            tag = ((value << 1) if value >= 0 else ((-value << 1) - 1)) << 2 | has_flags
            if tag < 0x80:
                append(tag)
            elif tag < 0x4000:  # most values: 2 bytes, inline
                append((tag & 0x7F) | 0x80)
                append(tag >> 7)
            else:
                _varint(out, tag)
        elif value is None:
            append(1 | has_flags)
        else:
            append(5 | has_flags)
            out += _DOUBLE.pack(value)
        if flags:
            _varint(out, flags)
    return bytes(out)


def encode_samples(samples: Sequence[Sample], codes: dict[str, tuple[int, int, float]]) -> bytes | None:
    """``encode`` of a cycle's samples straight from the sampler (the put path): the stored values
    without ``encode_value``'s general case, then the one encoder.

    ``codes``: channel name -> (channel id, scale, resolution), scale = 10**n for a resolution
    of exactly 10**-n (``base._scale``), else 0. None when a channel is not in ``codes``.
    """
    rows: list[Row] = []
    for s in samples:
        code = codes.get(s.channel)
        if code is None:
            return None
        ch, scale, res = code
        value = s.value
        stored: int | float | None
        if scale and value is not None and -1e15 < value < 1e15:
            stored = round(value * scale)
            if stored / scale != value:
                stored = float(value)
        else:
            stored = encode_value(value, res)
        rows.append((ch, stored, s.flags))
    return encode(rows)


def decode(data: bytes) -> list[Row]:
    """The rows of a blob ``encode`` made."""
    out: list[Row] = []
    append = out.append
    i = 0
    end = len(data)
    while i < end:
        ch = data[i]
        i += 1
        if ch > 0x7F:
            ch, i = _read_varint(data, i - 1)
        tag = data[i]
        i += 1
        if tag > 0x7F:
            tag, i = _read_varint(data, i - 1)
        value: int | float | None
        if tag & 1 == 0:
            z = tag >> 2
            value = (z >> 1) if z & 1 == 0 else -((z + 1) >> 1)
        elif tag >> 2 == 0:
            value = None
        else:
            value = _DOUBLE.unpack_from(data, i)[0]
            i += 8
        flags = 0
        if tag & 2:
            flags = data[i]
            i += 1
            if flags > 0x7F:
                flags, i = _read_varint(data, i - 1)
        append((ch, value, flags))
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    x = 0
    shift = 0
    while True:
        b = data[i]
        i += 1
        x |= (b & 0x7F) << shift
        if b < 0x80:
            return x, i
        shift += 7
