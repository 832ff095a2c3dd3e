"""The console's reads: bounded SQL on the read-only connections of central/sta/db.py (`ReadDb`),
each with a deadline. Errors of the pool become `Rejected` (400 too_expensive / 503 unavailable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from central.console.rollup import HOUR_MS
from central.errors import Rejected
from central.sta.errors import TooExpensive, Unavailable

REQUEST_TIMEOUT_S = 10.0
MAX_EVENTS = 500  # gaps and incidents per timeline answer


class ConsoleReads:
    """What the console's API asks the database, on a `ReadDb` of its own."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return self.db.fetch(sql, params, self.db.deadline(REQUEST_TIMEOUT_S))
        except TooExpensive:
            raise Rejected("too_expensive", f"the query took longer than its {REQUEST_TIMEOUT_S:g} s "
                           "bound; ask for a shorter range or a larger step") from None
        except Unavailable:
            raise Rejected("unavailable", "storage unavailable; retry later") from None

    # ---- the overview
    def latest(self) -> list[dict[str, Any]]:
        """Every node with its latest value per channel (one row per node and channel; one row
        with channel NULL for a node without readings), by node and channel."""
        return self.fetch(
            "SELECT n.node_id, n.last_seen_ms, n.health_json, l.channel, l.value, l.flags, l.wall_ms, "
            "c.unit FROM nodes n LEFT JOIN latest_readings l ON l.node_id = n.node_id "
            "LEFT JOIN channels c ON c.node_id = l.node_id AND c.channel = l.channel "
            "ORDER BY n.node_id, l.channel")

    # ---- one node
    def node(self, node_id: str) -> dict[str, Any] | None:
        rows = self.fetch("SELECT node_id, created_ms, last_seen_ms, health_json FROM nodes "
                          "WHERE node_id = ?", (node_id,))
        return rows[0] if rows else None

    def channels(self, node_id: str) -> list[dict[str, Any]]:
        """The node's channels (those it declared and those with a latest value), by name."""
        return self.fetch(
            "SELECT c.channel, c.unit, l.value, l.flags, l.wall_ms FROM channels c "
            "LEFT JOIN latest_readings l ON l.node_id = c.node_id AND l.channel = c.channel "
            "WHERE c.node_id = ? UNION "
            "SELECT l.channel, NULL, l.value, l.flags, l.wall_ms FROM latest_readings l "
            "WHERE l.node_id = ? AND NOT EXISTS (SELECT 1 FROM channels c2 "
            "WHERE c2.node_id = l.node_id AND c2.channel = l.channel) ORDER BY 1", (node_id, node_id))

    def series_raw(self, node_id: str, channel: str, since_ms: int, until_ms: int,
                   step_ms: int) -> list[dict[str, Any]]:
        """min/max/mean/count per bucket of ``step_ms`` (aligned to the epoch) from the readings."""
        return self.fetch(
            "SELECT (wall_ms / ?) * ? AS t, MIN(value) AS vmin, MAX(value) AS vmax, AVG(value) AS vmean, "
            "COUNT(value) AS n FROM readings WHERE node_id = ? AND channel = ? AND wall_ms >= ? "
            "AND wall_ms < ? GROUP BY 1 ORDER BY 1",
            (step_ms, step_ms, node_id, channel, since_ms, until_ms))

    def series_hourly(self, node_id: str, channel: str, since_ms: int, until_ms: int,
                      step_ms: int) -> list[dict[str, Any]]:
        """The same from the hourly rollup (``step_ms`` a multiple of an hour; whole hours)."""
        return self.fetch(
            "SELECT (hour_ms / ?) * ? AS t, MIN(v_min) AS vmin, MAX(v_max) AS vmax, "
            "SUM(v_sum) / NULLIF(SUM(n_values), 0) AS vmean, SUM(n_values) AS n FROM readings_hourly "
            "WHERE node_id = ? AND channel = ? AND hour_ms >= ? AND hour_ms < ? "
            "GROUP BY 1 ORDER BY 1",
            (step_ms, step_ms, node_id, channel, since_ms - since_ms % HOUR_MS, until_ms))

    def hours(self, node_id: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Per channel and hour: readings stored, clock-corrected, delayed (rollup rows)."""
        return self.fetch(
            "SELECT channel, hour_ms, n, n_corrected, n_delayed FROM readings_hourly "
            "WHERE node_id = ? AND hour_ms >= ? AND hour_ms < ? ORDER BY hour_ms, channel",
            (node_id, since_ms - since_ms % HOUR_MS, until_ms))

    def gaps(self, node_id: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        return self.fetch(
            "SELECT epoch, first_seq, last_seq, count, first_wall_ms, last_wall_ms, reason, received_ms "
            "FROM gaps WHERE node_id = ? AND COALESCE(last_wall_ms, first_wall_ms, received_ms) >= ? "
            "AND COALESCE(first_wall_ms, last_wall_ms, received_ms) < ? "
            "ORDER BY COALESCE(first_wall_ms, received_ms) DESC LIMIT ?",
            (node_id, since_ms, until_ms, MAX_EVENTS))

    def incidents(self, node_id: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        return self.fetch(
            "SELECT epoch, incident_id, wall_ms, kind, detail, count FROM incidents WHERE node_id = ? "
            "AND wall_ms >= ? AND wall_ms < ? ORDER BY wall_ms DESC LIMIT ?",
            (node_id, since_ms, until_ms, MAX_EVENTS))
