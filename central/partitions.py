"""PostgreSQL: ``readings`` partitioned by wall time, one partition a week, kept by us (no pg_partman).

Layout (migration ``scale``): ``readings`` is ``PARTITION BY RANGE (wall_ms)``; ``readings_pYYYYMMDD``
holds the 7 days from that UTC date (weeks counted from the Unix epoch, so every process computes
the same bounds), and ``readings_default`` holds whatever no week holds (a node whose clock is at
1970 or years ahead). `ensure_partitions` creates the weeks from the last one to `AHEAD_WEEKS`
ahead of now, so readings land in their week as they arrive; a week created late (the central was
down a month) takes its readings out of the default partition first.

A new week is created as a plain table and then attached: ``ATTACH PARTITION`` takes only a SHARE
UPDATE EXCLUSIVE lock on ``readings``, which ingest (ROW EXCLUSIVE) never waits for. A week past
its retention is detached with ``DETACH PARTITION`` under ``lock_timeout`` `DETACH_LOCK_TIMEOUT_MS`
(PostgreSQL 15 cannot detach concurrently from a table with a default partition): ingest and reads
wait at most that long behind it, and when a long read keeps the lock from it, the detach gives up
and is tried at the next round. The detached table is then dropped, which no one waits for.

At most once per (node, epoch, seq): a partitioned table's unique index must contain the partition
key, so the unique key is (node_id, epoch, seq, wall_ms) and a reading re-sent with another wall
time would not collide with it. The store therefore takes a per-node transaction lock before it
stores a batch (`PgStore._lock_node`) and looks up the batch's seqs across every partition (one
index range scan each) before inserting only the ones it does not hold; no two transactions of one
node ever interleave, in one process or many.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

DAY_MS = 86_400_000
PERIOD_MS = 7 * DAY_MS
AHEAD_WEEKS = 4  # weeks created ahead of now
BEHIND_WEEKS = 1  # and behind it on a new table (a node's backlog from last week finds its week)
DETACH_LOCK_TIMEOUT_MS = 200
PARENT = "readings"
DEFAULT = "readings_default"
_NAME = re.compile(r"readings_p(\d{8})")
# weeks outside these bounds stay in the default partition (no partition for 1970 or 2500)
FIRST_WEEK_MS = 946_684_800_000  # 2000-01-01
LAST_WEEK_MS = 4_102_444_800_000  # 2100-01-01


def week_start(wall_ms: int) -> int:
    return wall_ms - wall_ms % PERIOD_MS


def week_name(start_ms: int) -> str:
    day = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
    return f"readings_p{day:%Y%m%d}"


def name_start(name: str) -> int | None:
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    day = dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
    return int(day.timestamp() * 1000)


def weeks(tx: Any) -> list[int]:
    """Start (ms) of every attached weekly partition, ascending."""
    tx.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
               "WHERE i.inhparent = to_regclass(?)", (PARENT,))
    starts = [name_start(r[0]) for r in tx.fetchall()]
    return sorted(s for s in starts if s is not None)


def create_week(tx: Any, start_ms: int) -> bool:
    """Create and attach the week from ``start_ms`` (moving its rows out of the default partition);
    False when it exists already. Run it in its own transaction."""
    name = week_name(start_ms)
    end_ms = start_ms + PERIOD_MS
    # one creator at a time per schema, whatever the process (its rows are the default's, too)
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ' readings partitions'))")
    tx.execute("SELECT to_regclass(?)", (name,))
    if tx.fetchall()[0][0] is not None:
        return False
    tx.execute(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    tx.execute(f"WITH moved AS (DELETE FROM {DEFAULT} WHERE wall_ms >= ? AND wall_ms < ? RETURNING *) "
               f"INSERT INTO {name} SELECT * FROM moved", (start_ms, end_ms))
    tx.execute(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ({start_ms}) TO ({end_ms})")
    return True


def missing_weeks(existing: list[int], now_ms: int, *, ahead: int = AHEAD_WEEKS) -> list[int]:
    """Weeks to create: from the newest existing one (or last week) to ``ahead`` weeks past now."""
    this_week = week_start(now_ms)
    first = existing[-1] + PERIOD_MS if existing else this_week - BEHIND_WEEKS * PERIOD_MS
    last = min(this_week + ahead * PERIOD_MS, LAST_WEEK_MS - PERIOD_MS)
    have = set(existing)
    return [w for w in range(max(first, FIRST_WEEK_MS), last + 1, PERIOD_MS) if w not in have]


def ensure_partitions(store: Any, now_ms: int, *, ahead: int = AHEAD_WEEKS) -> list[str]:
    """Create the weeks up to ``ahead`` weeks past ``now_ms``; returns the names created."""
    existing = store.transaction(weeks)
    created = []
    for start in missing_weeks(existing, now_ms, ahead=ahead):
        if store.transaction(lambda tx, s=start: create_week(tx, s), write=True):
            created.append(week_name(start))
    return created


def drop_weeks_before(store: Any, cutoff_ms: int) -> tuple[list[str], list[str]]:
    """Detach and drop every week that ends at or before ``cutoff_ms``; returns (dropped, skipped:
    the weeks whose detach could not get its lock within `DETACH_LOCK_TIMEOUT_MS`)."""
    import psycopg

    dropped, skipped = [], []
    for start in store.transaction(weeks):
        if start + PERIOD_MS > cutoff_ms:
            break
        name = week_name(start)

        def detach(tx: Any, name: str = name) -> bool:
            tx.execute(f"SET LOCAL lock_timeout = {DETACH_LOCK_TIMEOUT_MS}")
            tx.execute("SAVEPOINT detach")
            try:
                tx.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")
            except psycopg.errors.LockNotAvailable:
                tx.execute("ROLLBACK TO SAVEPOINT detach")
                return False
            return True

        if not store.transaction(detach, write=True):
            skipped.append(name)
            continue
        store.transaction(lambda tx, name=name: tx.execute(f"DROP TABLE {name}"), write=True)
        dropped.append(name)
    return dropped, skipped
