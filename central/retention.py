"""Retention: how long raw readings of each channel class and the hourly rollup are kept, and the
hourly maintenance that applies it (and, on PostgreSQL, creates the weeks ahead: central/partitions.py).

``[retention]`` in ``serve --config`` (defaults below, docs/central.md "Retention"):

    [retention]
    raw_days = 400        # raw readings of every channel no class names
    hourly_days = 3650    # the hourly rollup (min/max/mean/count), which long-range charts read
    [retention.classes]
    "node.*" = 90         # a channel name, or a prefix ending in ".*"

PostgreSQL drops whole weeks once they are older than the longest raw retention (a detach and a
drop, no row by row delete); readings of classes kept shorter (and those in the default partition)
are deleted per node and channel, once both their wall time and their arrival are that old,
through the index (node_id, channel, wall_ms), in batches of `DELETE_BATCH` rows, each its own
short transaction, so ingest never waits long behind them.
SQLite deletes the same way (it has no partitions: docs/central.md, "SQLite's limits").
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from central import partitions
from node.errors import ConfigError

log = logging.getLogger("streetnode.central")

DAY_MS = 86_400_000
DELETE_BATCH = 10_000
INTERVAL_S = 3600.0
_CLASS = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?")


@dataclass(frozen=True)
class RetentionPolicy:
    raw_days: int = 400
    hourly_days: int = 3650
    classes: dict[str, int] = field(default_factory=lambda: {"node.*": 90})

    def longest_raw_days(self) -> int:
        return max([self.raw_days, *self.classes.values()])


def parse_retention(table: Any, *, where: str = "[retention]") -> RetentionPolicy:
    """The policy of a ``[retention]`` table (None: the defaults); one-line `ConfigError`s."""
    base = RetentionPolicy()
    if table is None:
        return base
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("raw_days", "hourly_days"):
            values[key] = _days(value, f"{where} {key}")
        elif key == "classes":
            if not isinstance(value, dict):
                raise ConfigError(f"{where} classes: expected a table of channel class = days")
            classes = {}
            for name, days in value.items():
                if not _CLASS.fullmatch(name):
                    raise ConfigError(f"{where} classes: {name!r}: expected a channel name or a prefix "
                                      "ending in '.*' (e.g. \"node.*\")")
                classes[name] = _days(days, f"{where} classes {name!r}")
            values["classes"] = classes
        else:
            raise ConfigError(f"{where} {key}: unknown key (expected raw_days, hourly_days, classes)")
    return RetentionPolicy(**{**base.__dict__, **values})


def _days(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise ConfigError(f"{where}: expected whole days from 1 to 100000, got {value!r}")
    return value


def class_of(policy: RetentionPolicy, channel: str) -> str | None:
    """The class that names ``channel`` (an exact name before a prefix, the longest prefix first);
    None for the channels no class names."""
    if channel in policy.classes:
        return channel
    prefixes = [name for name in policy.classes if name.endswith(".*") and channel.startswith(name[:-1])]
    return max(prefixes, key=len) if prefixes else None


def _delete_batched(store: Any, table: str, key: str, condition: str, params: list[Any]) -> int:
    deleted = 0
    while True:
        def run(tx: Any) -> int:
            tx.execute(f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} "
                       f"LIMIT {DELETE_BATCH})", params)
            return tx.rowcount

        count = store.transaction(run, write=True)
        deleted += count
        if count < DELETE_BATCH:
            return deleted


def apply(store: Any, policy: RetentionPolicy, now_ms: int) -> dict[str, Any]:
    """Apply ``policy`` once: returns what was dropped and deleted."""
    report: dict[str, Any] = {"dropped": [], "skipped": [], "deleted": 0, "hourly_deleted": 0}
    longest = policy.longest_raw_days()
    if getattr(store, "dialect", "") == "postgresql":
        report["dropped"], report["skipped"] = partitions.drop_weeks_before(store, now_ms - longest * DAY_MS)
    # per node and channel, through the index (node_id, channel, wall_ms): a probe per partition
    # when there is nothing to delete, never a scan of the table. Only readings also *received*
    # that long ago: a node whose clock was wrong (stamped 1970, flagged) keeps what it just sent.
    for node_id, channel in store.transaction(lambda tx: tx.execute(
            "SELECT node_id, channel FROM channels ORDER BY node_id, channel").fetchall()):
        name = class_of(policy, channel)
        days = policy.raw_days if name is None else policy.classes[name]
        cutoff = now_ms - days * DAY_MS
        report["deleted"] += _delete_batched(store, "readings", "node_id, epoch, seq, wall_ms",
                                             "node_id = ? AND channel = ? AND wall_ms < ? "
                                             "AND received_ms < ?",
                                             [node_id, channel, cutoff, cutoff])
    report["hourly_deleted"] = _delete_batched(store, "readings_hourly", "node_id, channel, hour_ms",
                                               "hour_ms < ?", [now_ms - policy.hourly_days * DAY_MS])
    return report


def maintain(store: Any, policy: RetentionPolicy, now_ms: int) -> dict[str, Any]:
    """One round: the weeks ahead (PostgreSQL), then retention."""
    created = []
    if getattr(store, "dialect", "") == "postgresql":
        created = partitions.ensure_partitions(store, now_ms)
    report = apply(store, policy, now_ms)
    report["created"] = created
    return report


class Maintenance:
    """`maintain` now and every ``interval_s`` in a thread of its own (one per central, run by the
    process that runs the alert engine's silent-node check)."""

    def __init__(self, store: Any, policy: RetentionPolicy, *, interval_s: float = INTERVAL_S,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._store, self._policy, self._interval_s, self._now_ms = store, policy, interval_s, now_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="maintenance", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = maintain(self._store, self._policy, self._now_ms())
            except Exception as e:  # the next round tries again; ingest never depends on it
                log.error("maintenance: %s", " ".join(str(e).split()))
            else:
                if report["created"] or report["dropped"] or report["deleted"] or report["skipped"]:
                    log.info("maintenance: created %s, dropped %s, deferred %s, deleted %d readings",
                             report["created"] or "none", report["dropped"] or "none",
                             report["skipped"] or "none", report["deleted"])
            self._stop.wait(self._interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
