"""Per-node quotas: readings per minute and stored bytes per day, as token buckets.

A node's readings bucket holds `IngestLimits.quota_readings_burst` (default 1,000,000: more than a
7-day backlog of the example node, 655,200 readings, so a node back from a week offline drains at
full speed) and refills at `quota_readings_per_minute` (default 1,000, 15x the example node's
rate). Its bytes bucket holds `quota_bytes_burst` of estimated storage (`stored_bytes`) and refills
at `quota_bytes_per_day`. A stolen key therefore adds at most the bursts plus the daily refill,
not gigabytes in a minute; a total per node would instead stop a healthy node after some years.

A batch is accepted while both buckets hold anything (it may take them below zero by one batch);
an empty bucket is answered ``429 quota`` naming it, with ``Retry-After`` until it is positive
again. Duplicates count as readings (they cost the receiver the same decoding and lookups; a
resend after a lost ack is rare) but not as stored bytes. Buckets live in memory: a restart
refills them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from central.errors import Rejected
from central.limits import IngestLimits
from node.protocol import IngestBatch

# storage estimate (SQLite and PostgreSQL rows with their indexes, rounded up)
READING_BYTES = 128
GAP_BYTES = 128
INCIDENT_BYTES = 128  # plus its kind and detail


def stored_bytes(stored: int, gaps: int, incidents: int, batch: IngestBatch) -> int:
    """Estimated bytes ``stored`` new readings, ``gaps`` gaps and ``incidents`` incidents take."""
    text = sum(len(i.kind) + len(i.detail) for i in batch.incidents)
    share = incidents / len(batch.incidents) if batch.incidents else 0.0
    return stored * READING_BYTES + gaps * GAP_BYTES + int(incidents * INCIDENT_BYTES + share * text)


class _Bucket:
    __slots__ = ("level", "updated")

    def __init__(self, level: float, updated: float) -> None:
        self.level, self.updated = level, updated


class NodeQuotas:
    """The two buckets of every node that has uploaded since the start (thread-safe)."""

    def __init__(self, limits: IngestLimits, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # name -> (capacity, refill per second, what the quota is called in answers)
        self._kinds = {
            "readings": (limits.quota_readings_burst, limits.quota_readings_per_minute / 60.0,
                         "quota_readings_per_minute"),
            "bytes": (limits.quota_bytes_burst, limits.quota_bytes_per_day / 86400.0, "quota_bytes_per_day"),
        }
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.refused = 0

    def _bucket(self, node_id: str, kind: str, now: float) -> _Bucket:
        capacity, rate, _ = self._kinds[kind]
        bucket = self._buckets.get((node_id, kind))
        if bucket is None:
            bucket = self._buckets[(node_id, kind)] = _Bucket(float(capacity), now)
        else:
            bucket.level = min(float(capacity), bucket.level + (now - bucket.updated) * rate)
            bucket.updated = now
        return bucket

    def check(self, node_id: str) -> None:
        """Raise ``429 quota`` (with ``retry_after_s``) when either bucket of the node is empty."""
        now = self._monotonic()
        with self._lock:
            for kind in self._kinds:
                bucket = self._bucket(node_id, kind, now)
                if bucket.level <= 0:
                    self.refused += 1
                    capacity, rate, name = self._kinds[kind]
                    wait = max(1, math.ceil((1 - bucket.level) / rate)) if rate > 0 else 86400
                    raise Rejected("quota", f"node {node_id!r} is over its {name} quota "
                                   f"({self._describe(kind)}); retry after {wait} s",
                                   quota=name, retry_after_s=wait)

    def _describe(self, kind: str) -> str:
        capacity, rate, _ = self._kinds[kind]
        if kind == "readings":
            return f"{rate * 60:g} readings a minute, bursts of {capacity}"
        return f"{rate * 86400:g} stored bytes a day, bursts of {capacity}"

    def charge(self, node_id: str, *, readings: int = 0, stored_bytes: int = 0) -> None:
        """Take from the buckets (a negative amount refunds, up to the capacity)."""
        now = self._monotonic()
        with self._lock:
            for kind, amount in (("readings", readings), ("bytes", stored_bytes)):
                bucket = self._bucket(node_id, kind, now)
                bucket.level = min(float(self._kinds[kind][0]), bucket.level - amount)

    def level(self, node_id: str, kind: str) -> float:
        with self._lock:
            return self._bucket(node_id, kind, self._monotonic()).level
