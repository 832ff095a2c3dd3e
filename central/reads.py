"""The read API for the city's operators and tools: every endpoint needs ``require_role("read")``.

``GET /v1/nodes``, ``GET /v1/nodes/{id}/readings`` (JSON or CSV), ``GET /v1/schema``.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from central.api_shapes import NODES_DOC, READINGS_DOC, SCHEMA_DOC
from central.auth import require_role
from central.context import AppContext
from central.errors import Rejected
from central.readpool import ReadBusy
from node.model import flag_names
from node.protocol import is_node_id, text_problem

MAX_READ_LIMIT = 100_000
DEFAULT_READ_LIMIT = 10_000
MAX_NODES_LIMIT = 10_000
DEFAULT_NODES_LIMIT = 1000
READ_HANDLERS = 4  # read pages built at once (ReadSlots)
READ_QUEUE_S = 10.0  # how long a read waits for one before it is shed
NEXT_HEADER = "X-Streetnode-Next"  # the next page's cursor (absent on the last page)
T = TypeVar("T")
_CURSOR_RE = re.compile(r"([0-9]{1,15})\.([0-9]{1,16})\.([0-9]{1,16})")
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
            "missing_readings": n.missing_readings, "incidents": n.incidents, "conflicts": n.conflicts,
            "identities": n.identities}


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


class ReadSlots:
    """At most `READ_HANDLERS` read handlers at work at once, each on a worker thread: building a page
    (JSON or CSV) is CPU in the receiver's process, and an upload must keep its share of it. A read
    that waits longer than `READ_QUEUE_S` for a slot is shed (`ReadBusy`: 503 with Retry-After)."""

    def __init__(self, size: int = READ_HANDLERS, wait_s: float = READ_QUEUE_S) -> None:
        self._limiter = anyio.CapacityLimiter(size)
        self.wait_s = wait_s

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            with anyio.fail_after(self.wait_s):
                await self._limiter.acquire()
        except TimeoutError:
            raise ReadBusy(f"every read handler stayed busy for {self.wait_s:g} s; retry shortly") from None
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._limiter.release()


def reading_json(r: Any) -> dict[str, Any]:
    """One `StoredReading` as the read API shows it (a plain dict: ``asdict`` is 5× slower)."""
    return {"node_id": r.node_id, "epoch": r.epoch, "seq": r.seq, "channel": r.channel, "unit": r.unit,
            "value": r.value, "flags": r.flags, "wall_ms": r.wall_ms, "boot_ms": r.boot_ms,
            "boot_id": r.boot_id, "received_ms": r.received_ms}


def format_cursor(r: Any) -> str:
    """The cursor after reading ``r``: ``WALL_MS.EPOCH.SEQ`` (its place in the readings' order)."""
    return f"{r.wall_ms}.{r.epoch}.{r.seq}"


def parse_cursor(text: str | None) -> tuple[int, int, int] | None:
    if text is None or text == "":
        return None
    m = _CURSOR_RE.fullmatch(text)
    if m is None:
        raise Rejected("bad_query", "cursor: expected the next value of the previous page "
                       "(WALL_MS.EPOCH.SEQ)", field="cursor")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


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


def known_channels(store: Any, node_id: str, limit: int = 1000) -> list[str]:
    """The channels a node has declared (with their unit) in its batches, by name (at most ``limit``)."""
    rows = store.query("SELECT channel FROM channels WHERE node_id = ? ORDER BY channel LIMIT ?",
                       (node_id, limit))
    return [r[0] for r in rows]


def check_channel(store: Any, node_id: str, channel: str) -> None:
    """404 ``not_found`` naming the node's channels (the first 1000) when ``channel`` is not one."""
    if store.query("SELECT 1 FROM channels WHERE node_id = ? AND channel = ?", (node_id, channel)):
        return
    known = known_channels(store, node_id)
    listed = ", ".join(known[:50]) + (" ..." if len(known) > 50 else "")
    raise Rejected("not_found", f"channel: node {node_id!r} has no channel {channel!r} "
                   f"(known: {listed or 'none yet'})", field="channel", known=known)


def router(ctx: AppContext) -> APIRouter:
    api = APIRouter(tags=["read"], dependencies=[Depends(require_role("read"))])
    schema = load_schema()

    @api.get("/v1/schema", responses=SCHEMA_DOC)
    def get_schema() -> JSONResponse:
        """The JSON Schema of the (decompressed) ingest document."""
        return JSONResponse(schema, media_type="application/schema+json")

    slots = ReadSlots()

    def nodes_page(limit: int, after: str | None) -> JSONResponse:
        if not 1 <= limit <= MAX_NODES_LIMIT:
            raise Rejected("bad_query", f"limit: expected 1..{MAX_NODES_LIMIT}", field="limit")
        if after is not None and not is_node_id(after):
            raise Rejected("bad_query", "after: expected a node id (the previous page's next)", field="after")
        found = ctx.store.list_nodes(after=after, limit=limit + 1)
        page = found[:limit]
        more = len(found) > limit
        return JSONResponse({"nodes": [node_json(n) for n in page],
                             "next": page[-1].node_id if more else None})

    @api.get("/v1/nodes", responses=NODES_DOC)
    async def nodes(limit: int = DEFAULT_NODES_LIMIT, after: str | None = None) -> JSONResponse:
        """Nodes by id (at most ``limit``, from the one after ``after``): last seen, health, counters."""
        return await slots.run(nodes_page, limit, after)

    def readings_page(node_id: str, channel: str | None, since: str | None, until: str | None, limit: int,
                      cursor: str | None, format: str | None, order: str, accept: str) -> Response:
        if format not in (None, "json", "csv"):
            raise Rejected("bad_query", "format: expected json or csv", field="format")
        if order not in ("asc", "desc"):
            raise Rejected("bad_query", "order: expected asc or desc", field="order")
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise Rejected("bad_query", f"limit: expected 1..{MAX_READ_LIMIT}", field="limit")
        if channel is not None and text_problem(channel) is not None:
            raise Rejected("bad_query", f"channel: {text_problem(channel)}", field="channel")
        now = ctx.now_ms()
        since_ms, until_ms = parse_time(since, "since", now), parse_time(until, "until", now)
        after = parse_cursor(cursor)
        if not is_node_id(node_id) or not ctx.store.list_nodes(node_id):
            raise Rejected("not_found", f"unknown node {node_id[:80]!r}")
        if channel is not None:
            check_channel(ctx.store, node_id, channel)
        found = ctx.store.readings(node_id, channel=channel, since_ms=since_ms, until_ms=until_ms,
                                   limit=limit + 1, after=after, newest_first=order == "desc")
        rows = found[:limit]
        next_cursor = format_cursor(rows[-1]) if len(found) > limit else None
        headers = {NEXT_HEADER: next_cursor} if next_cursor else {}
        if format == "csv" or (format is None and "text/csv" in accept):
            headers["Content-Disposition"] = f'attachment; filename="{node_id}-readings.csv"'
            return Response(readings_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
        return JSONResponse({"node": node_id, "count": len(rows), "readings": [reading_json(r) for r in rows],
                             "next": next_cursor}, headers=headers)

    @api.get("/v1/nodes/{node_id}/readings", responses=READINGS_DOC)
    async def readings(request: Request, node_id: str, channel: str | None = None, since: str | None = None,
                       until: str | None = None, limit: int = DEFAULT_READ_LIMIT, cursor: str | None = None,
                       format: str | None = None, order: str = "asc") -> Response:
        """Readings in (wall_ms, epoch, seq) order (``order=desc``: newest first), a page of at most
        ``limit``; ``next`` (JSON, or the X-Streetnode-Next header) is the ``cursor`` of the next
        page. ``since``/``until`` as ms, ISO 8601 or relative (``-5m``); CSV with format=csv. An
        unknown channel is a 404 naming the node's channels."""
        return await slots.run(readings_page, node_id, channel, since, until, limit, cursor, format, order,
                               request.headers.get("accept", ""))

    return api
