"""Per-node quotas and ingest claims, kept in the database so that every receiver process
(`serve --workers N`, or N hosts behind a load balancer) sees one quota per node, not one per process.

Quotas: readings per minute and stored bytes per day, as token buckets. A node's readings bucket
holds `IngestLimits.quota_readings_burst` (default 1,000,000: more than a 7-day backlog of the
example node, 655,200 readings, so a node back from a week offline drains at full speed) and
refills at `quota_readings_per_minute` (default 1,000, 15x the example node's rate). Its bytes
bucket holds `quota_bytes_burst` of estimated storage (`stored_bytes`) and refills at
`quota_bytes_per_day`. A stolen key therefore adds at most the bursts plus the daily refill, not
gigabytes in a minute; a total per node would instead stop a healthy node after some years.

A batch is admitted while both buckets hold anything and is charged after it was stored (it may
take them below zero: by at most `MAX_PER_NODE` batches); an empty bucket is answered ``429
quota`` naming it, with ``Retry-After`` until it is positive again. Duplicates count as readings
(they cost the receiver the same decoding and lookups; a resend after a lost ack is rare) but not
as stored bytes; a batch refused (422, 409...) or not stored costs nothing.

Ingest claims: a node has at most `MAX_PER_NODE` batches in progress or waiting across all
processes (a node sends one at a time; a stolen key's parallel batches must not take every slot).
A claim row is written when a batch is admitted and deleted when it is done; a claim left by a
process that died expires after `CLAIM_TTL_S` beyond the slot wait.

Each bucket is a row ``node_quotas (node_id, kind, level, updated_ms)``, refilled and read by one
upsert (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``) that also locks the node's row on
PostgreSQL until the transaction ends, so two processes admitting batches of one node take turns
and count each other's claims exactly. Admission and the charge are one short write transaction
each, beside the batch's own ingest transaction; on PostgreSQL they run on a connection of their
own (`_QuotaConnection`), so they never queue behind another node's batch holding the store's
write connection (a stolen key's large batches would otherwise slow every other node's upload
three times over). Wall time (`AppContext.now_ms`) drives the refill; a clock that steps back
refills nothing.

Before a body is read, `SharedQuotas.known_empty` answers from what this process learned at its
last admission of the node (no database round trip on the path a flood takes): a node refused for
an empty bucket is refused from its headers until the wait it was told has passed.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from typing import Any

from central.errors import Rejected
from central.limits import IngestLimits
from central.store import Store, StoreError
from node.protocol import IngestBatch

# storage estimate (SQLite and PostgreSQL rows with their indexes, rounded up)
READING_BYTES = 128
GAP_BYTES = 128
INCIDENT_BYTES = 128  # plus its kind and detail

MAX_PER_NODE = 2  # batches of one node in progress or waiting, over every process
CLAIM_TTL_S = 120.0  # beyond ingest_wait_s: a claim of a process that died stops counting then
KINDS = ("readings", "bytes")

# the level refilled to now, capped at the capacity: CASE rather than LEAST/GREATEST (PostgreSQL)
# or MIN/MAX (SQLite), so one statement serves both; a clock that stepped back refills nothing
_REFILLED = ("node_quotas.level + (CASE WHEN excluded.updated_ms > node_quotas.updated_ms "
             "THEN excluded.updated_ms - node_quotas.updated_ms ELSE 0 END) * ?")
_REFILL = ("INSERT INTO node_quotas (node_id, kind, level, updated_ms) VALUES (?, ?, ?, ?) "
           "ON CONFLICT (node_id, kind) DO UPDATE SET "
           f"level = CASE WHEN {_REFILLED} < ? THEN {_REFILLED} ELSE ? END, "
           "updated_ms = CASE WHEN excluded.updated_ms > node_quotas.updated_ms "
           "THEN excluded.updated_ms ELSE node_quotas.updated_ms END RETURNING level")


def stored_bytes(stored: int, gaps: int, incidents: int, batch: IngestBatch) -> int:
    """Estimated bytes ``stored`` new readings, ``gaps`` gaps and ``incidents`` incidents take."""
    text = sum(len(i.kind) + len(i.detail) for i in batch.incidents)
    share = incidents / len(batch.incidents) if batch.incidents else 0.0
    return stored * READING_BYTES + gaps * GAP_BYTES + int(incidents * INCIDENT_BYTES + share * text)


class _QuotaConnection:
    """PostgreSQL: one connection of this process for the quota transactions (reopened when lost)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._conn: Any = None

    def transaction(self, fn: Callable[[Any], Any], *, write: bool = True) -> Any:
        import psycopg

        from central.store_pg import redact
        from central.store_sql import Tx

        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self._store.url, connect_timeout=10)
                    if self._store.schema:
                        self._conn.execute(f'SET search_path TO "{self._store.schema}"')
                    self._conn.commit()
                try:
                    result = fn(Tx(self._store, self._conn.cursor()))
                    self._conn.commit()
                    return result
                except BaseException:
                    self._conn.rollback()
                    raise
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                reason = " ".join(str(e).split())
                raise StoreError(f"quotas: {redact(self._store.url)}: {reason}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SharedQuotas:
    """The buckets and claims of every node, in ``store``'s database (thread-safe; one per process)."""

    def __init__(self, store: Store, limits: IngestLimits, now_ms: Callable[[], int]) -> None:
        self._limits, self._now_ms = limits, now_ms
        if getattr(store, "dialect", None) == "postgresql" and getattr(store, "url", None):
            self._store: Any = _QuotaConnection(store)
        else:  # SQLite has one writer at a time anyway: the store's own connection
            self._store = store
        # kind -> (capacity, refill per ms, what the quota is called in answers)
        self._kinds = {
            "readings": (limits.quota_readings_burst, limits.quota_readings_per_minute / 60_000.0,
                         "quota_readings_per_minute"),
            "bytes": (limits.quota_bytes_burst, limits.quota_bytes_per_day / 86_400_000.0,
                      "quota_bytes_per_day"),
        }
        self._empty_lock = threading.Lock()
        # node -> (until ms, kind, level, when it had that level)
        self._empty_until: dict[str, tuple[int, str, float, int]] = {}
        self.refused = 0

    # ------------------------------------------------------------------ SQL
    def _refill(self, tx: Any, node_id: str, now: int) -> dict[str, float]:
        """Refill the node's buckets to ``now`` (locking its rows); returns their levels."""
        levels = {}
        for kind in KINDS:
            capacity, rate, _ = self._kinds[kind]
            cap = float(capacity)
            tx.execute(_REFILL, (node_id, kind, cap, now, rate, cap, rate, cap))
            levels[kind] = float(tx.fetchone()[0])
        return levels

    def _charge(self, tx: Any, node_id: str, readings: int, stored: int) -> None:
        for kind, amount in (("readings", readings), ("bytes", stored)):
            if amount:
                tx.execute("UPDATE node_quotas SET level = level - ? WHERE node_id = ? AND kind = ?",
                           (float(amount), node_id, kind))

    # ------------------------------------------------------------ decisions
    def _refusal(self, node_id: str, kind: str, level: float, now: int) -> Rejected:
        capacity, rate, name = self._kinds[kind]
        wait = max(1, math.ceil((1 - level) / (rate * 1000))) if rate > 0 else 86400
        with self._empty_lock:
            if len(self._empty_until) >= 4096:
                self._empty_until.clear()  # many made-up ids cannot get here (keys are checked first)
            self._empty_until[node_id] = (now + wait * 1000, kind, level, now)
        self.refused += 1
        return Rejected("quota", f"node {node_id!r} is over its {name} quota ({self._describe(kind)}); "
                        f"retry after {wait} s", quota=name, retry_after_s=wait)

    def _describe(self, kind: str) -> str:
        capacity, rate, _ = self._kinds[kind]
        if kind == "readings":
            return f"{rate * 60_000:g} readings a minute, bursts of {capacity}"
        return f"{rate * 86_400_000:g} stored bytes a day, bursts of {capacity}"

    def known_empty(self, node_id: str) -> None:
        """Raise ``429 quota`` when this process refused the node for an empty bucket and the wait it
        was told has not passed (no database access: the check made before a body is read)."""
        now = self._now_ms()
        with self._empty_lock:
            entry = self._empty_until.get(node_id)
            if entry is not None and entry[0] <= now:
                del self._empty_until[node_id]
                entry = None
        if entry is not None:
            _, kind, level, then = entry
            rate = self._kinds[kind][1]
            raise self._refusal(node_id, kind, level + (now - then) * rate, now)

    def admit(self, node_id: str) -> str:
        """Admit one batch of the node: ``429 quota`` when a bucket is empty, ``503 overloaded`` when
        the node already has `MAX_PER_NODE` batches in progress or waiting; returns the claim id,
        which `finish` must be given."""
        now = self._now_ms()
        claim = uuid.uuid4().hex
        expires = now + int((self._limits.ingest_wait_s + CLAIM_TTL_S) * 1000)

        def run(tx: Any) -> tuple[str, Any]:
            levels = self._refill(tx, node_id, now)  # locks the node's rows: admissions take turns
            for kind in KINDS:
                if levels[kind] <= 0:
                    return "quota", (kind, levels[kind])
            tx.execute("DELETE FROM ingest_claims WHERE node_id = ? AND expires_ms < ?", (node_id, now))
            tx.execute("SELECT COUNT(*) FROM ingest_claims WHERE node_id = ?", (node_id,))
            busy = int(tx.fetchone()[0])
            if busy >= MAX_PER_NODE:
                return "busy", busy
            tx.execute("INSERT INTO ingest_claims (node_id, claim, expires_ms) VALUES (?, ?, ?)",
                       (node_id, claim, expires))
            return "ok", None

        outcome, detail = self._store.transaction(run, write=True)
        if outcome == "quota":
            raise self._refusal(node_id, detail[0], detail[1], now)
        if outcome == "busy":
            retry = self._limits.retry_after_s
            raise Rejected("overloaded", f"node {node_id!r} already has {detail} batches in progress or "
                           f"waiting; send one at a time (retry after {retry} s)", retry_after_s=retry)
        with self._empty_lock:
            self._empty_until.pop(node_id, None)
        return claim

    def finish(self, node_id: str, claim: str, *, readings: int = 0, stored_bytes: int = 0) -> None:
        """Charge what the batch cost and release its claim."""
        now = self._now_ms()

        def run(tx: Any) -> None:
            if readings or stored_bytes:
                self._refill(tx, node_id, now)
                self._charge(tx, node_id, readings, stored_bytes)
            tx.execute("DELETE FROM ingest_claims WHERE node_id = ? AND claim = ?", (node_id, claim))

        self._store.transaction(run, write=True)

    def take(self, node_id: str, readings: int) -> None:
        """Admit and charge a request that stores no readings (a ping) in one transaction."""
        now = self._now_ms()

        def run(tx: Any) -> tuple[str, float] | None:
            levels = self._refill(tx, node_id, now)
            for kind in KINDS:
                if levels[kind] <= 0:
                    return kind, levels[kind]
            self._charge(tx, node_id, readings, 0)
            return None

        empty = self._store.transaction(run, write=True)
        if empty is not None:
            raise self._refusal(node_id, empty[0], empty[1], now)

    def close(self) -> None:
        if isinstance(self._store, _QuotaConnection):
            self._store.close()

    def level(self, node_id: str, kind: str) -> float:
        """The bucket's level now (refilled; for tests and diagnostics)."""
        now = self._now_ms()
        return self._store.transaction(lambda tx: self._refill(tx, node_id, now)[kind], write=True)
