"""Parsing and formatting of durations ("10s", "5m", "2h") and sizes ("256MiB")."""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``"250ms"``, ``"10s"``, ``"5m"``, ``"2h"``, ``"7d"`` (a bare number is seconds)."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as \"10s\", \"5m\" or \"2h\"")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("expected a non-negative duration")
        return float(text)
    m = _DURATION_RE.match(str(text))
    if not m:
        raise ValueError("expected a duration such as \"10s\", \"5m\" or \"2h\"")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 600 -> "10m", 0.25 -> "250ms"."""
    for unit in ("d", "h", "m", "s"):
        n = seconds / _DURATION_UNITS[unit]
        if n >= 1 and abs(n - round(n)) < 1e-9:
            return f"{round(n)}{unit}"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


def parse_size(text: str | int) -> int:
    """Bytes from ``"256MiB"``, ``"1GB"``, ``"512KiB"`` (a bare integer is bytes)."""
    if isinstance(text, bool):
        raise ValueError("expected a size such as \"256MiB\" or \"1GiB\"")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("expected a non-negative size")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError("expected a size such as \"256MiB\" or \"1GiB\"")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    """Largest binary unit that divides exactly: 268435456 -> "256MiB"."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit.lower()]
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"
