"""The overview's answer, shared by every poller for at most `OVERVIEW_TTL_S`.

Twenty operators' browsers polling `/v1/latest` every few seconds would otherwise each build the same
document (every node and channel) and take the receiver's CPU from the uploads. One request builds
it (the others wait for it rather than build it again), encodes it once as JSON and once gzipped,
and every request within the next second (``[console] overview_cache_s``) gets those bytes. What the
overview shows is at most that much older than the database: with the page polling every
``poll_s`` (default 3 s) an upload shows within ``poll_s`` + 1 s.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from typing import Any

OVERVIEW_TTL_S = 1.0


class SharedAnswer:
    """``get(build)``: (JSON bytes, gzip bytes) of ``build()``, rebuilt when older than ``ttl_s``."""

    def __init__(self, ttl_s: float = OVERVIEW_TTL_S, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.monotonic = ttl_s, monotonic
        self._lock = threading.Lock()
        self._built_at: float | None = None
        self._answer: tuple[bytes, bytes] = (b"", b"")

    def get(self, build: Callable[[], Any]) -> tuple[bytes, bytes]:
        with self._lock:  # one builder; the others wait and take its answer
            now = self.monotonic()
            if self._built_at is None or now - self._built_at >= self.ttl_s:
                body = json.dumps(build(), separators=(",", ":"), ensure_ascii=False,
                                  allow_nan=False).encode("utf-8")
                self._answer = (body, gzip.compress(body, compresslevel=1, mtime=0))
                self._built_at = self.monotonic()
            return self._answer
