"""The read API for the city's operators and tools: every endpoint needs ``require_role("read")``.

``GET /v1/nodes``, ``GET /v1/nodes/{id}/readings`` (JSON or CSV), ``GET /v1/schema``.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from central.auth import require_role
from central.context import AppContext
from central.errors import Rejected
from node.model import flag_names

MAX_READ_LIMIT = 100_000
CSV_COLUMNS = ("node_id", "epoch", "seq", "channel", "unit", "value", "flags", "flag_names", "wall_ms",
               "time_utc", "boot_ms", "boot_id", "received_ms")
_MS_RE = re.compile(r"[0-9]{1,15}")
_RELATIVE_RE = re.compile(r"-([0-9]{1,9})(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# a spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the v1 ingest document (central/schema_v1.json)."""
    return json.loads(importlib.resources.files("central").joinpath("schema_v1.json").read_text("utf-8"))


def node_json(n: Any) -> dict[str, Any]:
    health = n.health or {}
    return {"node_id": n.node_id, "created_ms": n.created_ms, "last_seen_ms": n.last_seen_ms,
            "backlog_readings": health.get("backlog_readings"),
            "oldest_reading_age_s": health.get("oldest_reading_age_s"), "firmware": health.get("firmware"),
            "health": n.health, "readings": n.readings, "gaps": n.gaps,
            "missing_readings": n.missing_readings, "incidents": n.incidents}


def parse_time(text: str | None, name: str, now_ms: int | None = None) -> int | None:
    """Milliseconds since the epoch from ``1764100000000``, ISO 8601 (naive means UTC) or, given
    ``now_ms``, a time relative to it: ``now``, ``-30s``, ``-5m``, ``-2h``, ``-7d``."""
    if text is None or text == "":
        return None
    if _MS_RE.fullmatch(text):
        return int(text)
    relative = _RELATIVE_RE.fullmatch(text)
    if now_ms is not None and (relative or text == "now"):
        return now_ms - (int(relative.group(1)) * _UNIT_MS[relative.group(2)] if relative else 0)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise Rejected("bad_query", f"{name}: expected milliseconds since the epoch, ISO 8601 time or "
                       "a relative time such as -5m, -2h, -7d, "
                       f"got {text[:40]!r}", field=name) from None


def csv_text(cell: str) -> str:
    """A text cell a spreadsheet shows as text: one starting with ``= + - @`` (or tab/CR) gets a
    leading apostrophe. Only text columns go through it; numbers are written as numbers."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def readings_csv(rows: list[Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        t = datetime.fromtimestamp(r.wall_ms / 1000, UTC).isoformat(timespec="milliseconds")
        w.writerow((csv_text(r.node_id), r.epoch, r.seq, csv_text(r.channel), csv_text(r.unit),
                    "" if r.value is None else repr(r.value), r.flags, "|".join(flag_names(r.flags)),
                    r.wall_ms, t.replace("+00:00", "Z"), r.boot_ms, csv_text(r.boot_id), r.received_ms))
    return out.getvalue()


def known_channels(store: Any, node_id: str) -> list[str]:
    """The channels a node has declared (with their unit) in its batches, by name."""
    rows = store.transaction(lambda tx: tx.execute(
        "SELECT channel FROM channels WHERE node_id = ? ORDER BY channel", (node_id,)).fetchall())
    return [r[0] for r in rows]


def check_channel(store: Any, node_id: str, channel: str) -> None:
    """404 ``not_found`` naming the node's channels when ``channel`` is not one of them."""
    known = known_channels(store, node_id)
    if channel not in known:
        listed = ", ".join(known[:50]) + (" ..." if len(known) > 50 else "")
        raise Rejected("not_found", f"channel: node {node_id!r} has no channel {channel!r} "
                       f"(known: {listed or 'none yet'})", field="channel", known=known)


def router(ctx: AppContext) -> APIRouter:
    api = APIRouter(tags=["read"], dependencies=[Depends(require_role("read"))])
    schema = load_schema()

    @api.get("/v1/schema")
    def get_schema() -> JSONResponse:
        """The JSON Schema of the (decompressed) ingest document."""
        return JSONResponse(schema, media_type="application/schema+json")

    @api.get("/v1/nodes")
    def nodes() -> JSONResponse:
        """Every node: last seen, reported backlog, gaps, incidents."""
        return JSONResponse({"nodes": [node_json(n) for n in ctx.store.list_nodes()]})

    @api.get("/v1/nodes/{node_id}/readings")
    def readings(request: Request, node_id: str, channel: str | None = None, since: str | None = None,
                 until: str | None = None, limit: int = 10_000, format: str | None = None,
                 order: str = "asc") -> Response:
        """Readings by wall time, oldest first (``order=desc``: newest first); ``since``/``until``
        as ms, ISO 8601 or relative (``-5m``); CSV with format=csv. An unknown channel is a 404
        naming the node's channels."""
        if format not in (None, "json", "csv"):
            raise Rejected("bad_query", "format: expected json or csv", field="format")
        if order not in ("asc", "desc"):
            raise Rejected("bad_query", "order: expected asc or desc", field="order")
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise Rejected("bad_query", f"limit: expected 1..{MAX_READ_LIMIT}", field="limit")
        now = ctx.now_ms()
        since_ms, until_ms = parse_time(since, "since", now), parse_time(until, "until", now)
        if ctx.store.node_key(node_id) is None:
            raise Rejected("not_found", f"unknown node {node_id!r}")
        if channel is not None:
            check_channel(ctx.store, node_id, channel)
        rows = ctx.store.readings(node_id, channel=channel, since_ms=since_ms, until_ms=until_ms, limit=limit,
                                  newest_first=order == "desc")
        want_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
        if want_csv:
            filename = re.sub(r"[^A-Za-z0-9._-]", "_", node_id)  # an id from before ids were checked
            return Response(readings_csv(rows), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="{filename}-readings.csv"'})
        return JSONResponse({"node": node_id, "count": len(rows), "readings": [asdict(r) for r in rows]})

    return api
