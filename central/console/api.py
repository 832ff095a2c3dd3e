"""The operator read API behind the console pages (role ``read``; also for scripts):

- ``GET /v1/latest``: every node in one call: state, location, health summary, latest value per
  channel with its age and colour band (from ``latest_readings``: never scans readings);
- ``GET /v1/nodes/{id}/channels``: a node's channels, unit and latest value;
- ``GET /v1/nodes/{id}/series?channel=&since=&until=&step=``: min/max/mean/count per bucket,
  at most `MAX_POINTS` buckets (``step=auto`` picks one); a step of whole hours reads the rollup;
- ``GET /v1/nodes/{id}/timeline?since=&until=``: gaps (with reason), incidents, buffered and
  clock-corrected stretches, completeness per hour.

Times: ms since the epoch, ISO 8601 or relative to now (``-5m``, ``-24h``, ``-7d``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from central.api_shapes import object_doc
from central.auth import require_role
from central.console import status
from central.console.cache import SharedAnswer
from central.console.config import ConsoleConfig
from central.console.queries import ConsoleReads
from central.console.rollup import HOUR_MS
from central.context import AppContext
from central.errors import Rejected, register_status
from central.health import health_of, lat_lon
from central.reads import parse_time

MAX_POINTS = 1000
MAX_RANGE_MS = 400 * 86_400_000  # a series or timeline spans at most ~13 months
MAX_TIMELINE_MS = 31 * 86_400_000
NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                2 * 86400, 7 * 86400)
_STEP_RE = re.compile(r"([0-9]{1,9})(ms|s|m|h|d)?")
_STEP_UNIT_MS = {"ms": 1, "s": 1000, None: 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
HEALTH_KEYS = ("backlog_readings", "oldest_reading_age_s", "firmware", "config_hash", "clock_synced",
               "clock_offset_ms", "storm", "sensors_faulted", "uptime_s")

register_status("too_expensive", 400)


def location_of(health: dict[str, Any]) -> dict[str, Any] | None:
    point = lat_lon(health)
    if point is None:
        return None
    return {"lat": point[0], "lon": point[1], "ward": health.get("location_ward"),
            "label": health.get("location_label")}


def channel_json(channel: str, unit: str | None, value: Any, flags: Any, wall_ms: Any, now_ms: int,
                 config: ConsoleConfig) -> dict[str, Any]:
    number = status.finite(value)
    doc: dict[str, Any] = {"channel": channel, "unit": unit or "", "value": number,
                           "flags": None if flags is None else int(flags),
                           "wall_ms": None if wall_ms is None else int(wall_ms),
                           "age_s": None if wall_ms is None else round((now_ms - int(wall_ms)) / 1000, 1)}
    band = status.band_of(channel, number, config)
    if band is not None:
        doc["band"] = band
    return doc


def overview(rows: list[dict[str, Any]], now_ms: int, config: ConsoleConfig) -> list[dict[str, Any]]:
    """`ConsoleReads.latest` rows -> one document per node."""
    nodes: list[dict[str, Any]] = []
    for row in rows:
        if not nodes or nodes[-1]["node_id"] != row["node_id"]:
            health = health_of(row["health_json"])
            last_seen = None if row["last_seen_ms"] is None else int(row["last_seen_ms"])
            state = status.node_state(now_ms, last_seen, health, config)
            age_s = None if last_seen is None else round((now_ms - last_seen) / 1000, 1)
            nodes.append({"node_id": row["node_id"], "state": state, "last_seen_ms": last_seen,
                          "last_seen_age_s": age_s,
                          "location": location_of(health), "storm": bool(health.get("storm")),
                          "health": {key: health.get(key) for key in HEALTH_KEYS}, "channels": {}})
        if row["channel"] is not None:
            entry = channel_json(row["channel"], row["unit"], row["value"], row["flags"], row["wall_ms"],
                                 now_ms, config)
            del entry["channel"]  # the key already says it
            nodes[-1]["channels"][row["channel"]] = entry
    for node in nodes:
        for suffix, key in ((".cpu_temp_c", "cpu_temp_c"), (".disk_used_pct", "disk_used_pct")):
            found = next((c["value"] for name, c in node["channels"].items() if name.endswith(suffix)), None)
            node["health"][key] = found
    return nodes


def parse_step(text: str, since_ms: int, until_ms: int) -> int:
    """The bucket width in ms: ``auto`` (the smallest nice step giving ≤ MAX_POINTS buckets), or
    ``600``/``600s``/``10m``/``1h``; refused when it gives more than MAX_POINTS buckets."""
    span = max(until_ms - since_ms, 1)
    if text == "auto":
        for step_s in NICE_STEPS_S:
            if span / (step_s * 1000) <= MAX_POINTS:
                return step_s * 1000
        return -(-span // MAX_POINTS)
    match = _STEP_RE.fullmatch(text)
    step_ms = int(match.group(1)) * _STEP_UNIT_MS[match.group(2)] if match else 0
    if step_ms < 1:
        raise Rejected("bad_query", "step: expected auto or a duration such as 60, 10m, 1h, "
                       f"got {text[:40]!r}", field="step")
    if span / step_ms > MAX_POINTS:
        minimum_s = -(-span // (MAX_POINTS * 1000))
        raise Rejected("bad_query", f"step: {text} gives more than {MAX_POINTS} points over this range; "
                       f"use at least {minimum_s} s or step=auto", field="step")
    return step_ms


def time_range(since: str | None, until: str | None, default_since: str, now_ms: int,
               max_ms: int) -> tuple[int, int]:
    since_ms = parse_time(since or default_since, "since", now_ms)
    until_ms = parse_time(until, "until", now_ms) if until else now_ms
    assert since_ms is not None and until_ms is not None
    if until_ms <= since_ms:
        raise Rejected("bad_query", "until: expected a time after since", field="until")
    if until_ms - since_ms > max_ms:
        raise Rejected("bad_query", f"since: the range spans more than {max_ms // 86_400_000} days",
                       field="since")
    return since_ms, until_ms


def stretches(hours: list[int], flagged: set[int]) -> list[list[int]]:
    """[start_ms, end_ms] of runs of consecutive flagged hours."""
    runs: list[list[int]] = []
    for hour in hours:
        if hour not in flagged:
            continue
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR_MS
        else:
            runs.append([hour, hour + HOUR_MS])
    return runs


def completeness(rows: list[dict[str, Any]], since_ms: int, until_ms: int) -> dict[str, Any]:
    """Per hour: readings stored, expected, clock-corrected, delayed. A channel's expected count per
    hour is the 90th percentile (nearest rank) of its hourly counts in the range: its usual rate,
    gaps aside (storm hours, sampled faster, count fully once they are over a tenth of the range)."""
    first_hour = since_ms - since_ms % HOUR_MS
    hours = list(range(first_hour, until_ms, HOUR_MS))
    per_channel: dict[str, list[int]] = {}
    stored = dict.fromkeys(hours, 0)
    corrected = dict.fromkeys(hours, 0)
    delayed = dict.fromkeys(hours, 0)
    counts: dict[tuple[str, int], int] = {}
    for row in rows:
        hour, channel, n = int(row["hour_ms"]), row["channel"], int(row["n"])
        per_channel.setdefault(channel, []).append(n)
        counts[(channel, hour)] = n
        if hour in stored:
            corrected[hour] += int(row["n_corrected"])
            delayed[hour] += int(row["n_delayed"])
    usual = {channel: sorted(ns)[math.ceil(0.9 * len(ns)) - 1] for channel, ns in per_channel.items()}
    expected = sum(usual.values())
    for (channel, hour), n in counts.items():
        if hour in stored:
            stored[hour] += min(n, usual[channel])
    return {"t": hours, "stored": [stored[h] for h in hours], "expected": [expected] * len(hours),
            "corrected": [corrected[h] for h in hours], "delayed": [delayed[h] for h in hours],
            "buffered_stretches": stretches(hours, {h for h in hours if delayed[h]}),
            "corrected_stretches": stretches(hours, {h for h in hours if corrected[h]})}


def router(ctx: AppContext, reads: ConsoleReads, config: ConsoleConfig) -> APIRouter:
    api = APIRouter(tags=["console"], dependencies=[Depends(require_role("read"))])

    def node_or_404(node_id: str) -> dict[str, Any]:
        node = reads.node(node_id)
        if node is None:
            raise Rejected("not_found", f"unknown node {node_id!r}")
        return node

    def channel_or_404(node_id: str, channel: str) -> dict[str, Any]:
        known = reads.channels(node_id)
        found = next((c for c in known if c["channel"] == channel), None)
        if found is None:
            names = [c["channel"] for c in known]
            raise Rejected("not_found", f"channel: node {node_id!r} has no channel {channel!r} "
                           f"(known: {', '.join(names[:50]) or 'none yet'})", field="channel", known=names)
        return found

    shared_overview = SharedAnswer(config.overview_cache_s)
    thresholds = {"late_after_s": config.late_after_s, "silent_after_s": config.silent_after_s,
                  "buffering_age_s": config.buffering_age_s,
                  "flood_bands_cm": list(config.flood_bands_cm),
                  "pm25_breakpoints_ugm3": list(status.PM25_BREAKPOINTS)}

    def build_overview() -> dict[str, Any]:
        now = ctx.now_ms()
        nodes = overview(reads.latest(), now, config)
        return {"server_time_ms": now, "nodes": nodes, "thresholds": thresholds}

    @api.get("/v1/latest", response_class=JSONResponse,
             responses=object_doc("every node's state and latest values", "server_time_ms", "nodes",
                                  "thresholds"))
    def latest(request: Request) -> Response:
        """Every node: state (live/buffering/late/silent), location, storm, health summary and the
        latest value of each channel with its age and colour band. One answer is shared by all
        callers for up to a second (`server_time_ms` says when it was made); gzip on request."""
        body, zipped = shared_overview.get(build_overview)
        headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(zipped, media_type="application/json", headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @api.get("/v1/nodes/{node_id}/channels", responses=object_doc("a node's channels and latest values",
                                                                  "node", "channels"))
    def channels(node_id: str) -> JSONResponse:
        """The node's channels with unit and latest value, by name."""
        node_or_404(node_id)
        now = ctx.now_ms()
        return JSONResponse({"node": node_id, "channels": [
            channel_json(c["channel"], c["unit"], c["value"], c["flags"], c["wall_ms"], now, config)
            for c in reads.channels(node_id)]})

    @api.get("/v1/nodes/{node_id}/series", responses=object_doc(
        "one channel as columns t, min, max, mean, count", "node", "channel", "unit",
        "since_ms", "until_ms", "step_ms", "source", "t", "min", "max", "mean", "count"))
    def series(node_id: str, channel: str, since: str | None = None, until: str | None = None,
               step: str = "auto") -> JSONResponse:
        """Columns ``t`` (bucket start, ms), ``min``, ``max``, ``mean``, ``count`` of one channel, one
        entry per non-empty bucket, ≤ 1,000 buckets; default range the last 24 h."""
        node_or_404(node_id)
        found = channel_or_404(node_id, channel)
        since_ms, until_ms = time_range(since, until, "-24h", ctx.now_ms(), MAX_RANGE_MS)
        step_ms = parse_step(step, since_ms, until_ms)
        fetch: Callable[..., list[dict[str, Any]]] = reads.series_raw
        source = "readings"
        if step_ms % HOUR_MS == 0:
            fetch, source = reads.series_hourly, "hourly"
        rows = fetch(node_id, channel, since_ms, until_ms, step_ms)
        return JSONResponse({
            "node": node_id, "channel": channel, "unit": found["unit"] or "", "since_ms": since_ms,
            "until_ms": until_ms, "step_ms": step_ms, "source": source,
            "t": [int(r["t"]) for r in rows], "min": [status.finite(r["vmin"]) for r in rows],
            "max": [status.finite(r["vmax"]) for r in rows],
            "mean": [status.finite(r["vmean"]) for r in rows],
            "count": [int(r["n"]) for r in rows]})

    @api.get("/v1/nodes/{node_id}/timeline", responses=object_doc(
        "a node's state, gaps, incidents and hourly completeness", "node", "since_ms",
        "until_ms", "state", "last_seen_ms", "health", "location", "gaps", "incidents", "hours"))
    def timeline(node_id: str, since: str | None = None, until: str | None = None) -> JSONResponse:
        """Gaps (with reason), incidents, buffered and clock-corrected stretches and completeness per
        hour over at most 31 days (default the last 24 h); newest events first."""
        node = node_or_404(node_id)
        now = ctx.now_ms()
        since_ms, until_ms = time_range(since, until, "-24h", now, MAX_TIMELINE_MS)
        health = health_of(node["health_json"])
        last_seen = None if node["last_seen_ms"] is None else int(node["last_seen_ms"])
        return JSONResponse({
            "node": node_id, "since_ms": since_ms, "until_ms": until_ms,
            "state": status.node_state(now, last_seen, health, config), "last_seen_ms": last_seen,
            "health": health, "location": location_of(health),
            "gaps": reads.gaps(node_id, since_ms, until_ms),
            "incidents": reads.incidents(node_id, since_ms, until_ms),
            "hours": completeness(reads.hours(node_id, since_ms, until_ms), since_ms, until_ms)})

    return api
