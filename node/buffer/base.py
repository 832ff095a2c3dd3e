"""What both buffers share: result types, the claim bookkeeping and small helpers."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from drivers.quality import Quality
from node.model import Gap

# clock state of a sampling cycle, stored once per cycle
CLK_SYNCED = 0
CLK_UNSYNCED = 1
CLK_CORRECTED = 2
CLK_FLAGS = {CLK_SYNCED: 0, CLK_UNSYNCED: int(Quality.CLOCK_UNSYNCED),
             CLK_CORRECTED: int(Quality.CLOCK_CORRECTED)}

MAX_RIDE_ALONG = 200  # gaps / incidents carried by one batch at most


@dataclass(frozen=True, slots=True)
class PutResult:
    """Sequence numbers given to one sampling cycle (``last_seq < first_seq`` for an empty cycle).

    ``durable`` is True when the cycle is on disk; False only while the disk
    refuses writes and the cycle waits in the bounded in-memory overflow.
    """

    first_seq: int
    last_seq: int
    durable: bool


@dataclass(frozen=True, slots=True)
class BufferStats:
    node_id: str
    epoch: int
    readings: int  # readings waiting in the buffer (claimed ones included)
    bytes_on_disk: int  # database + WAL file
    oldest_wall_ms: int | None
    newest_wall_ms: int | None
    last_seq: int  # highest sequence number handed out in this epoch (0: none yet)
    claimed: int  # readings in batches claimed and not yet acked/released
    gaps_pending: int
    incidents_pending: int
    overflow_readings: int  # readings held in memory while the disk refuses writes
    dropped_total: int  # readings recorded as gaps by this process (evicted, overflow, rejected)
    integrity: str | None  # "ok", a problem description, or None when not checked
    buffer_id: str | None = None  # random id made with the database (meta), None: unknown
    acked_seq: int = 0  # every seq up to this one left the file (acknowledged or recorded as a gap)
    segments: tuple[tuple[int, int], ...] = ()  # (first seq, epoch) of each epoch still in the file


@dataclass(slots=True)
class Claim:
    """One claimed batch: a closed seq range plus the gaps/incidents riding along."""

    lo: int
    hi: int
    count: int
    gap_ids: list[int] = field(default_factory=list)
    incident_ids: list[int] = field(default_factory=list)
    held: list = field(default_factory=list)  # cycles claimed from the in-memory overflow (lo/hi unused)
    on_disk: int = 0  # acknowledged, not yet deleted: readings still in the file
    epoch: int = 0  # the epoch its readings were numbered in (the batch's epoch)


def clock_state(synced: bool, corrected: bool = False) -> int:
    if synced:
        return CLK_SYNCED
    return CLK_CORRECTED if corrected else CLK_UNSYNCED


def free_window(claims: Iterable[Claim], start: int, newest_first: bool) -> tuple[int, int] | None:
    """The unclaimed seq window reachable from ``start`` without crossing a claim.

    Oldest-first: ``(lo, hi)`` with ``lo >= start``; newest-first: ``hi <= start``.
    Returns None when ``start`` itself lies inside a claim (the caller moves past it).
    """
    lo, hi = (start, 1 << 62) if not newest_first else (0, start)
    for c in claims:
        if c.lo <= start <= c.hi:
            return None
        if not newest_first and c.lo > start:
            hi = min(hi, c.lo - 1)
        if newest_first and c.hi < start:
            lo = max(lo, c.hi + 1)
    return lo, hi


def runs(seqs: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Contiguous runs of sorted ``seqs`` as (first, last, index of first, index of last)."""
    out: list[tuple[int, int, int, int]] = []
    start = 0
    for i in range(1, len(seqs) + 1):
        if i == len(seqs) or seqs[i] != seqs[i - 1] + 1:
            out.append((seqs[start], seqs[i - 1], start, i - 1))
            start = i
    return out


def gaps_for(epoch: int, seqs: Sequence[int], walls: Sequence[int | None], reason: str) -> list[Gap]:
    """One Gap per contiguous run of the sorted ``seqs`` (``walls`` aligned with them)."""
    return [
        Gap(epoch, first, last, j - i + 1, walls[i], walls[j], reason)
        for first, last, i, j in runs(seqs)
    ]


def merge_gap(prev: Gap | None, new: Gap) -> Gap | None:
    """``prev`` extended by ``new`` when they join up with the same reason, else None."""
    if prev is None or prev.reason != new.reason or prev.epoch != new.epoch:
        return None
    if prev.last_seq + 1 != new.first_seq:
        return None
    return Gap(prev.epoch, prev.first_seq, new.last_seq, prev.count + new.count,
               prev.first_wall_ms, new.last_wall_ms, prev.reason)


@functools.lru_cache(maxsize=256)
def decimals(res: float) -> int:
    """Decimal places of a resolution such as 0.01 (2) or 1.0 (0)."""
    text = f"{res:.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


@functools.lru_cache(maxsize=256)
def _scale(res: float) -> int:
    """10**n when ``res`` is exactly 10**-n (all of CHANNEL_UNITS), else 0."""
    if res <= 0:
        return 0
    scale = 10 ** decimals(res)
    return scale if 1 / scale == res else 0


def encode_value(value: float | None, res: float) -> int | float | None:
    """Store a value as an integer count of its channel's resolution when that is exact.

    The sampler rounds values to the resolution, so 23.45 °C becomes 2345 (2 bytes on
    disk instead of an 8-byte REAL); anything that does not round-trip stays a float.
    """
    if value is None or not -1e15 < value < 1e15:  # also NaN and infinities
        return value
    scale = _scale(res)
    if scale:  # k / 10**n is the float nearest to the decimal: exact round trip test
        k = round(value * scale)
        return k if k / scale == value else float(value)
    if res <= 0:
        return value
    k = round(value / res)
    return k if round(k * res, decimals(res)) == value else float(value)


def decode_value(stored: int | float | None, res: float) -> float | None:
    if stored is None or isinstance(stored, float):
        return stored
    scale = _scale(res)
    if scale:
        return stored / scale
    return float(round(stored * res, decimals(res)))
