"""Resource paths: ``Things('pole-1')/Datastreams``, ``Observations('pole-1:3:17')/result/$value``.

A key is a quoted string (a quote doubled inside) or a bare token (``Things(42)`` means the id "42":
every id of this service is a string). Links quote and percent-encode ids the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from central.sta.errors import BadQuery

MAX_PATH_SEGMENTS = 8


@dataclass(frozen=True)
class Segment:
    name: str
    key: str | None = None


def parse_path(path: str) -> list[Segment]:
    segments: list[Segment] = []
    i, n = 0, len(path)
    while i < n:
        start = i
        while i < n and path[i] not in "/(":
            i += 1
        name = path[start:i]
        if not name:
            raise BadQuery(f"path: empty segment at position {start} of {path[:80]!r}")
        key = None
        if i < n and path[i] == "(":
            key, i = _key(path, i + 1)
        if i < n:
            if path[i] != "/":
                raise BadQuery(f"path: expected '/' at position {i} of {path[:80]!r}")
            i += 1
            if i == n:
                raise BadQuery(f"path: ends with '/': {path[:80]!r}")
        segments.append(Segment(name, key))
        if len(segments) > MAX_PATH_SEGMENTS:
            raise BadQuery(f"path: more than {MAX_PATH_SEGMENTS} segments")
    return segments


def _key(path: str, i: int) -> tuple[str, int]:
    n = len(path)
    if i < n and path[i] == "'":
        out = []
        i += 1
        while i < n:
            if path[i] == "'":
                if i + 1 < n and path[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                if i + 1 < n and path[i + 1] == ")":
                    return "".join(out), i + 2
                raise BadQuery(f"path: expected ')' after the quoted id at position {i + 1}")
            out.append(path[i])
            i += 1
        raise BadQuery("path: unterminated quoted id")
    end = path.find(")", i)
    if end < 0 or end == i:
        raise BadQuery(f"path: expected an id and ')' at position {i}")
    return path[i:end], end + 1


def id_literal(entity_id: str) -> str:
    """``'pole-1:weather.temperature_c'`` as it stands in a link (quoted, percent-encoded)."""
    return "'" + quote(entity_id.replace("'", "''"), safe=":._-~@!$*+,;=") + "'"
