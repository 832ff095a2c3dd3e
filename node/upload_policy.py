"""What the uploader does with each answer: pure functions, no I/O.

The node's buffer is the only copy of what a pole measured, so an answer is evidence to check,
not a verdict to obey (a metrics agent's "4xx = drop" would hand the city's data to any proxy):

- only an answer carrying a valid ``X-Streetnode-Receipt`` (`node.protocol.verify_receipt`) comes
  from our central; nothing unsigned ever acknowledges or dead-letters a reading;
- a signed 2xx counts only when its body is the receipt of exactly that batch (`receipt_problem`);
- the documented per-batch refusals are signed 413 (split) and signed 422 naming a field (the
  reading, gap, incident or health key it names is dealt with alone); every other 4xx, any
  redirect and anything unsigned means "the path is wrong": keep everything, back off, report.

`classify` maps one attempt to a `Verdict`; `Backoff` is capped exponential backoff with full jitter
that honours ``Retry-After``; `server_time_ms` reads the central's clock from a signed answer.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# 401 error codes of the receiver (docs/protocol.md)
STALE_TIMESTAMP = "stale_timestamp"
HEADER_SERVER_TIME = "X-Streetnode-Server-Time"  # ms since the epoch, on every central response
REPLAY = "replay"
TRANSIENT = (408, 429, 502, 503, 504)  # what a gateway in front of the central says while it is away


class Action(enum.Enum):
    ACK = "ack"  # signed 2xx, the receipt of exactly this batch: ack it
    RETRY = "retry"  # no answer, or "later" (408/429/5xx): release, back off, try again
    SPLIT = "split"  # 413, or signed 422 naming a reading: claim half as many (one reading: signed only)
    REFUSE_RECORD = "refuse_record"  # signed 422 naming a gap or incident: replace that record alone
    REFUSE_HEALTH = "refuse_health"  # signed 422 naming a health key: send without it
    PATH = "path"  # no receipt, a receipt for something else, or an undocumented answer
    CLOCK = "clock"  # signed 401 stale_timestamp: learn the central's time, re-sign, retry once
    RESIGN = "resign"  # signed 401 replay: re-sign with a fresh timestamp, retry once
    AUTH_FAILED = "auth_failed"  # 401 unknown_node/bad_signature/...: release, back off, report


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str  # one line for logs, status and incidents
    retry_after: float | None = None  # seconds, from the Retry-After header
    error_code: str | None = None  # the receiver's JSON "error" field, if any
    field: str | None = None  # the field a signed 422 names
    trusted: bool = False  # the answer came, signed, from our central (the path works)
    incident: str | None = None  # kind of incident to record (once per failure streak)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``now`` is the node's *corrected* wall time (local clock + the offset learned from the
    central): an HTTP-date is the server's clock, and a node clock days off must not turn
    10 s into days (or into nothing).
    """
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


_FIELD_RE = re.compile(r"^(?P<part>[a-z]+)(?:\[(?P<index>\d+)\])?(?:\.(?P<rest>.*))?$")


def refused_part(field: str | None) -> tuple[str, int | str | None] | None:
    """What a signed 422's ``field`` names: ("reading", None), ("incident", i), ("gap", i),
    ("health", key); None when it names the document itself (a protocol mismatch)."""
    m = _FIELD_RE.match(field or "")
    if m is None:
        return None
    part, index, rest = m.group("part"), m.group("index"), m.group("rest")
    if part in ("channels", "stamps", "boots"):  # all derived from readings: bisect to the one
        return "reading", None
    if part in ("incidents", "gaps") and index is not None:
        return part[:-1], int(index)
    if part == "health" and rest:
        return "health", rest
    return None


def receipt_problem(body: Any, *, batch_id: int, epoch: int, readings: int) -> str | None:
    """None when a signed 2xx body is the receipt of exactly this batch (contract 2), else what
    is wrong: ``stored + duplicates + conflicts == readings == len(batch)``, batch and epoch echoed."""
    if not isinstance(body, Mapping):
        return "not a JSON object"
    counts = {}
    for key in ("stored", "duplicates", "readings", "conflicts"):
        value = body.get(key, 0 if key == "conflicts" else None)
        if type(value) is not int or value < 0:
            return f"{key}: expected a count, got {value!r}"
        counts[key] = value
    if body.get("batch") != batch_id or type(body.get("batch")) is not int:
        return f"batch: answer for batch {body.get('batch')!r}, sent {batch_id}"
    if body.get("epoch") != epoch or type(body.get("epoch")) is not int:
        return f"epoch: answer for epoch {body.get('epoch')!r}, sent {epoch}"
    if counts["readings"] != readings:
        return f"readings: the central decoded {counts['readings']}, sent {readings}"
    accounted = counts["stored"] + counts["duplicates"] + counts["conflicts"]
    if accounted != readings:
        return f"stored + duplicates + conflicts = {accounted}, sent {readings}"
    return None


def classify(status: int | None, headers: Mapping[str, str], body: Any, *, signed: bool, now: float,
             network_error: str | None = None, summary: str = "",
             expect: tuple[int, int, int] | None = None) -> Verdict:
    """The action for one attempt.

    ``status`` is None when no response came back; ``signed`` says the answer carried a valid
    receipt; ``now`` is the corrected wall time (for a Retry-After date); ``summary`` describes an
    unsigned answer for reports (content type, title); ``expect`` = (batch id, epoch, readings)
    checks a signed 2xx body (omit it for requests that carry no batch).
    """
    if status is None:
        return Verdict(Action.RETRY, network_error or "no response")
    code = error_code(body)
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    retry_after = retry_after_seconds(headers.get("Retry-After"), now)
    if not signed:
        what = f"HTTP {status}{f' {summary}' if summary else ''} without a receipt"
        if status == 401:
            return Verdict(Action.AUTH_FAILED, f"{detail} (unsigned)", error_code=code)
        if status == 413:  # a proxy's or the central's body cap (checked before any signature):
            return Verdict(Action.SPLIT, what, error_code=code)  # smaller batches lose nothing
        if status in TRANSIENT:
            return Verdict(Action.RETRY, what, retry_after=retry_after, error_code=code)
        return Verdict(Action.PATH, what, error_code=code)
    if 200 <= status < 300:
        problem = None if expect is None else receipt_problem(body, batch_id=expect[0], epoch=expect[1],
                                                                 readings=expect[2])
        if problem is not None:
            return Verdict(Action.PATH, f"{detail} receipt does not match the batch: {problem}",
                           incident="receipt_mismatch")
        return Verdict(Action.ACK, detail, trusted=True)
    if status == 413:
        return Verdict(Action.SPLIT, detail, error_code=code, trusted=True)
    if status == 422:
        field = body.get("field") if isinstance(body, Mapping) else None
        part = refused_part(field if isinstance(field, str) else None)
        message = body.get("message") if isinstance(body, Mapping) else None
        reason = f"{detail} {field}" + (f": {message[:200]}" if isinstance(message, str) else "")
        if part is None:
            return Verdict(Action.PATH, reason, error_code=code, field=field, trusted=True)
        action = {"reading": Action.SPLIT, "health": Action.REFUSE_HEALTH}.get(part[0], Action.REFUSE_RECORD)
        return Verdict(action, reason, error_code=code, field=field, trusted=True)
    if status == 401:
        if code == STALE_TIMESTAMP:
            return Verdict(Action.CLOCK, detail, error_code=code, trusted=True)
        if code == REPLAY:
            return Verdict(Action.RESIGN, detail, error_code=code, trusted=True)
        return Verdict(Action.AUTH_FAILED, detail, error_code=code, trusted=True)
    if status in (408, 429) or 500 <= status < 600:
        return Verdict(Action.RETRY, detail, retry_after=retry_after, error_code=code, trusted=True)
    return Verdict(Action.PATH, detail, error_code=code, trusted=True)


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


class PathBreaker:
    """A circuit breaker on the path to the central.

    *closed*: batches go out. After ``threshold`` consecutive attempts without a trustworthy
    answer (no answer, unsigned, or a receipt for something else) it *opens*: rounds send only a
    signed ping (a few hundred bytes) until one is answered with a valid receipt; then it is
    *half-open*: batches go out again, and the first untrusted answer opens it at once, the first
    acknowledged batch closes it.
    """

    def __init__(self, threshold: int = 3) -> None:
        if threshold < 1:
            raise ValueError(f"breaker threshold: expected at least 1, got {threshold}")
        self.threshold = threshold
        self.state = "closed"
        self.untrusted = 0  # consecutive untrusted answers
        self.opened_at: float | None = None  # monotonic time it last opened
        self.last_problem: str | None = None

    @property
    def open(self) -> bool:
        return self.state == "open"

    def untrusted_answer(self, problem: str, now: float) -> bool:
        """Count one untrusted answer; True when this opened the breaker."""
        self.untrusted += 1
        self.last_problem = problem
        if self.state == "half_open" or (self.state == "closed" and self.untrusted >= self.threshold):
            first = self.opened_at is None
            self.state = "open"
            if first:
                self.opened_at = now
            return first
        return False

    def probe_answered(self) -> None:
        """A signed ping came back: let batches through again, on probation."""
        if self.state == "open":
            self.state = "half_open"

    def trusted_answer(self) -> float | None:
        """A signed, well-formed answer to a batch: close; returns when it had opened (or None)."""
        opened, self.opened_at = self.opened_at, None
        self.state, self.untrusted, self.last_problem = "closed", 0, None
        return opened
