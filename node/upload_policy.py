"""What the uploader does with each answer of the central: pure functions, no I/O.

`classify` maps one HTTP outcome to an `Action` (Telegraf-style split into
ack / retry / split / drop); `Backoff` is capped exponential backoff with full
jitter that honours ``Retry-After``; `server_time_ms` reads the central's clock
from a 401 ``stale_timestamp`` body or the ``Date`` header.
"""

from __future__ import annotations

import email.utils
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# 401 error codes of the receiver (docs/protocol.md)
STALE_TIMESTAMP = "stale_timestamp"
HEADER_SERVER_TIME = "X-Streetnode-Server-Time"  # ms since the epoch, on every central response
REPLAY = "replay"


class Action(enum.Enum):
    ACK = "ack"  # 2xx: stored (or already stored); ack the batch
    RETRY = "retry"  # 408/429/5xx/network: release, back off, try again later
    SPLIT = "split"  # 413: release, claim half as many readings
    DEAD_LETTER = "dead_letter"  # other 4xx: the central will never take this batch
    CLOCK = "clock"  # 401 stale_timestamp: learn the server's time, re-sign, retry once
    RESIGN = "resign"  # 401 replay: re-sign with a fresh timestamp, retry once
    AUTH_FAILED = "auth_failed"  # 401 unknown_node/bad_signature/...: release, back off, report


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str  # one line for logs, status and incidents
    retry_after: float | None = None  # seconds, from the Retry-After header
    error_code: str | None = None  # the receiver's JSON "error" field, if any


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def error_code(body: Any) -> str | None:
    if isinstance(body, Mapping):
        code = body.get("error")
        return code if isinstance(code, str) else None
    return None


def classify(status: int | None, headers: Mapping[str, str], body: Any, *, now: float,
             network_error: str | None = None) -> Verdict:
    """The action for one attempt: ``status`` is None when no response came back."""
    if status is None:
        return Verdict(Action.RETRY, network_error or "no response")
    code = error_code(body)
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    if 200 <= status < 300:
        return Verdict(Action.ACK, detail)
    if status == 413:
        return Verdict(Action.SPLIT, detail, error_code=code)
    if status in (408, 429) or 500 <= status < 600:
        ra = retry_after_seconds(headers.get("Retry-After"), now)
        return Verdict(Action.RETRY, detail, retry_after=ra, error_code=code)
    if status == 401:
        if code == STALE_TIMESTAMP:
            return Verdict(Action.CLOCK, detail, error_code=code)
        if code == REPLAY:
            return Verdict(Action.RESIGN, detail, error_code=code)
        return Verdict(Action.AUTH_FAILED, detail, error_code=code)
    if 400 <= status < 500:
        return Verdict(Action.DEAD_LETTER, detail, error_code=code)
    # 1xx/3xx: requests follows no redirects for POST we would want; treat as transient
    return Verdict(Action.RETRY, detail, error_code=code)


def server_time_ms(headers: Mapping[str, str], body: Any) -> tuple[int, int] | None:
    """(server time in ms, its uncertainty in ms) from a response, or None.

    ``server_time_ms`` in a JSON body and the ``X-Streetnode-Server-Time``
    header are exact to the millisecond; the ``Date`` header has whole seconds,
    so its midpoint is used with ±500 ms. ``headers`` may be any mapping.
    """
    if isinstance(body, Mapping):
        value = body.get("server_time_ms")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return int(value), 0
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get(HEADER_SERVER_TIME.lower(), "").strip()
    if value.isdigit() and len(value) <= 15:
        return int(value), 0
    date = lower.get("date")
    if date:
        try:
            when = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            return None
        if when is not None and when.tzinfo is not None:
            return int(when.timestamp() * 1000) + 500, 500
    return None


class Backoff:
    """Capped exponential backoff with full jitter: wait U(0, min(cap, base·2^n)).

    A ``Retry-After`` from the server is a floor: the wait is never shorter than
    it (clamped to ``cap`` so a confused server cannot park a node for days).
    """

    def __init__(self, initial: float, cap: float, rng: Callable[[], float]) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError(f"backoff: expected 0 < initial <= cap, got {initial}, {cap}")
        self.initial = initial
        self.cap = cap
        self._rng = rng
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def ceiling(self) -> float:
        """The upper bound of the next wait (before jitter)."""
        return min(self.cap, self.initial * 2.0 ** min(self.failures, 60))

    def next_delay(self, retry_after: float | None = None) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        delay = self._rng() * self.ceiling()
        self.failures += 1
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay
