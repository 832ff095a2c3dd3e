"""Limits of the receiver (kept apart so the CLI can show them without the web stack)."""

from __future__ import annotations

from dataclasses import dataclass

from node.protocol import TIMESTAMP_WINDOW_MS

DEFAULT_MAX_BODY = 16 * 1024 * 1024  # compressed bytes on the wire
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024  # after gzip: the gzip-bomb bound
MAX_PING_BODY = 4096


@dataclass(frozen=True)
class IngestLimits:
    max_body: int = DEFAULT_MAX_BODY
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
    window_ms: int = TIMESTAMP_WINDOW_MS
