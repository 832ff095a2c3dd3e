"""The HTTP receiver: `create_app(store)` (FastAPI), `serve_in_thread`, `serve_forever`.

Every rejection is a JSON ``{"error": code, "message": ..., ...}`` with a 4xx
status and stores nothing; every response carries ``X-Streetnode-Server-Time``
(ms) and uvicorn's ``Date`` header, so a node with a wrong clock can correct it.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.limits import DEFAULT_MAX_BODY, DEFAULT_MAX_DECOMPRESSED
from central.sta import build_sta
from central.store import Replay, Store, StoreError, UnknownNode, open_store
from drivers.quality import names as flag_names
from node import protocol
from node.protocol import ProtocolError

MAX_PING_BODY = 4096
MAX_READ_LIMIT = 100_000
# Longer than the node's 30 s upload interval, so a node on a metered SIM reuses its TLS
# connection between rounds (4.0 vs 13.4 MB/day measured by bench/drain.py).
KEEP_ALIVE_S = 75
REPLAY_MESSAGE = "this signature was already used; re-sign with a new timestamp"
ACCEPTED_TYPES = (protocol.CONTENT_TYPE, "application/json")
CSV_COLUMNS = ("node_id", "epoch", "seq", "channel", "unit", "value", "flags", "flag_names", "wall_ms",
               "time_utc", "boot_ms", "boot_id", "received_ms")

STATUS = {"unknown_node": 401, "bad_signature": 401, "stale_timestamp": 401, "replay": 401,
          "bad_content_type": 415, "too_large": 413, "bad_gzip": 400, "bad_json": 400, "schema": 422,
          "bad_query": 400, "not_found": 404, "unavailable": 503}


class Rejected(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


def error_response(code: str, message: str, **extra: Any) -> JSONResponse:
    status = STATUS.get(code, 400)
    headers = {"WWW-Authenticate": "Streetnode-HMAC-SHA256"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


class ServerTimeMiddleware:
    """Adds ``X-Streetnode-Server-Time`` to every HTTP response (pure ASGI, no buffering)."""

    def __init__(self, app: Any, clock: Callable[[], float]) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_time(message: Any) -> None:
            if message["type"] == "http.response.start":
                ms = str(int(self.clock() * 1000)).encode()
                message["headers"] = [*message.get("headers", []),
                                      (protocol.HEADER_SERVER_TIME.lower().encode(), ms)]
            await send(message)

        await self.app(scope, receive, send_with_time)


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the v1 ingest document (central/schema_v1.json)."""
    return json.loads(importlib.resources.files("central").joinpath("schema_v1.json").read_text("utf-8"))


def create_app(store: Store, *, clock: Callable[[], float] = time.time, max_body: int = DEFAULT_MAX_BODY,
               max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
               window_ms: int = protocol.TIMESTAMP_WINDOW_MS) -> FastAPI:
    """The receiver's ASGI app over ``store``; ``clock`` gives the server's wall time in seconds."""
    app = FastAPI(title="streetnode central", version=str(protocol.PROTOCOL_VERSION),
                  description="Receives signed, gzip-compressed v1 batches from streetnode nodes.")
    app.add_middleware(ServerTimeMiddleware, clock=clock)

    def now_ms() -> int:
        return int(clock() * 1000)

    @app.exception_handler(Rejected)
    async def on_rejected(_request: Request, exc: Rejected) -> JSONResponse:
        return error_response(exc.code, exc.message, **exc.extra)

    @app.exception_handler(StoreError)
    async def on_store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return error_response("unavailable", f"storage unavailable: {exc}")

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in err.get("loc", ()))
        return error_response("bad_query", f"{field}: {err.get('msg', 'invalid')}", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "bad_request"
        return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code)

    async def read_body(request: Request, cap: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            raise Rejected("too_large", f"body larger than {cap} bytes", limit=cap)
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > cap:
                raise Rejected("too_large", f"body larger than {cap} bytes", limit=cap)
            chunks.append(chunk)
        return b"".join(chunks)

    def authenticate(request: Request, body: bytes) -> tuple[protocol.AuthHeaders, int]:
        try:
            auth = protocol.parse_auth_headers(request.headers)
        except ProtocolError as e:
            raise Rejected("bad_signature", str(e), field=e.field) from None
        key = store.node_key(auth.node_id)
        if key is None:
            raise Rejected("unknown_node", f"unknown node {auth.node_id!r}; add it with "
                           "'streetnode-central node add ID'")
        if not protocol.verify_signature(key, request.method, request.url.path, body, auth.timestamp,
                                         auth.signature, node_id=auth.node_id):
            raise Rejected("bad_signature", "signature does not match (wrong key, path or body?)")
        now = now_ms()
        if not protocol.timestamp_fresh(auth.timestamp, now, window_ms):
            raise Rejected("stale_timestamp", f"timestamp {auth.timestamp} is {now - auth.timestamp} ms "
                           f"from server time; correct the clock by the offset and re-sign",
                           server_time_ms=now, window_ms=window_ms)
        return auth, now

    def ingest_sync(request: Request, body: bytes) -> dict[str, int]:
        auth, now = authenticate(request, body)
        try:
            batch = protocol.decode_body(body, max_decompressed=max_decompressed)
        except ProtocolError as e:
            raise Rejected(e.code, str(e), field=e.field) from None
        if batch.node_id != auth.node_id:
            raise Rejected("schema", f"node: {batch.node_id!r} does not match the signing node "
                           f"{auth.node_id!r}", field="node")
        try:
            result = store.ingest(batch, signature=auth.signature,
                                  expires_ms=auth.timestamp + window_ms, now_ms=now)
        except Replay:
            raise Rejected("replay", REPLAY_MESSAGE) from None
        except UnknownNode:
            raise Rejected("unknown_node", f"unknown node {auth.node_id!r}") from None
        return result.as_dict()

    schema = load_schema()

    @app.get("/v1/schema")
    def get_schema() -> JSONResponse:
        """The JSON Schema of the (decompressed) ingest document."""
        return JSONResponse(schema, media_type="application/schema+json")

    @app.post(protocol.INGEST_PATH, openapi_extra={"requestBody": {"required": True, "content": {
        protocol.CONTENT_TYPE: {"schema": {"type": "string", "format": "binary",
                                           "description": "gzip of a document valid against /v1/schema"}}}}})
    async def ingest(request: Request) -> JSONResponse:
        """Store a signed, gzip-compressed v1 batch (see docs/protocol.md)."""
        body = await read_body(request, max_body)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if ctype not in ACCEPTED_TYPES or encoding != protocol.CONTENT_ENCODING:
            raise Rejected("bad_content_type", f"expected Content-Type {protocol.CONTENT_TYPE} and "
                           f"Content-Encoding gzip, got {ctype or 'none'!r} / {encoding or 'none'!r}")
        return JSONResponse(await run_in_threadpool(ingest_sync, request, body))

    def ping_sync(request: Request, body: bytes) -> dict[str, Any]:
        auth, now = authenticate(request, body)
        try:
            store.accept_signature(auth.node_id, auth.signature, expires_ms=auth.timestamp + window_ms,
                                   now_ms=now)
        except Replay:
            raise Rejected("replay", REPLAY_MESSAGE) from None
        info = next(iter(store.list_nodes(auth.node_id)), None)
        return {"ok": True, "protocol": protocol.PROTOCOL_VERSION, "node": auth.node_id,
                "server_time_ms": now, "clock_offset_ms": now - auth.timestamp,
                "status": node_json(info) if info else None}

    @app.post(protocol.PING_PATH)
    async def ping(request: Request) -> JSONResponse:
        """Signed round trip for diagnostics: server time and what the central knows of the node."""
        body = await read_body(request, MAX_PING_BODY)
        return JSONResponse(await run_in_threadpool(ping_sync, request, body))

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """Liveness and storage reachability."""
        store.node_key("")
        return JSONResponse({"ok": True, "protocol": protocol.PROTOCOL_VERSION, "server_time_ms": now_ms()})

    @app.get("/v1/nodes")
    def nodes() -> JSONResponse:
        """Every node: last seen, reported backlog, gaps, incidents."""
        return JSONResponse({"nodes": [node_json(n) for n in store.list_nodes()]})

    @app.get("/v1/nodes/{node_id}/readings")
    def readings(request: Request, node_id: str, channel: str | None = None, since: str | None = None,
                 until: str | None = None, limit: int = 10_000, format: str | None = None) -> Response:
        """Readings by wall time; ``since``/``until`` as ms or ISO 8601; CSV with format=csv."""
        if store.node_key(node_id) is None:
            raise Rejected("not_found", f"unknown node {node_id!r}")
        if not 1 <= limit <= MAX_READ_LIMIT:
            raise Rejected("bad_query", f"limit: expected 1..{MAX_READ_LIMIT}", field="limit")
        rows = store.readings(node_id, channel=channel, since_ms=parse_time(since, "since"),
                              until_ms=parse_time(until, "until"), limit=limit)
        want_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
        if format not in (None, "json", "csv"):
            raise Rejected("bad_query", "format: expected json or csv", field="format")
        if want_csv:
            return Response(readings_csv(rows), media_type="text/csv; charset=utf-8", headers={
                "Content-Disposition": f'attachment; filename="{node_id}-readings.csv"'})
        return JSONResponse({"node": node_id, "count": len(rows), "readings": [asdict(r) for r in rows]})

    sta, app.state.sta_db = build_sta(store)
    app.include_router(sta)
    return app


def close_app(app: Any) -> None:
    """Release what `create_app` opened besides the store (the SensorThings read connections)."""
    db = getattr(app.state, "sta_db", None)
    if db is not None:
        db.close()


def node_json(n: Any) -> dict[str, Any]:
    health = n.health or {}
    return {"node_id": n.node_id, "created_ms": n.created_ms, "last_seen_ms": n.last_seen_ms,
            "backlog_readings": health.get("backlog_readings"),
            "oldest_reading_age_s": health.get("oldest_reading_age_s"), "firmware": health.get("firmware"),
            "health": n.health, "readings": n.readings, "gaps": n.gaps,
            "missing_readings": n.missing_readings, "incidents": n.incidents}


def parse_time(text: str | None, name: str) -> int | None:
    """Milliseconds since the epoch from ``1764100000000`` or ISO 8601 (naive means UTC)."""
    if text is None or text == "":
        return None
    if text.isdigit() and len(text) <= 15:
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("bad_query", f"{name}: expected milliseconds since the epoch or ISO 8601 time, "
                       f"got {text[:40]!r}", field=name) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def readings_csv(rows: list[Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        t = datetime.fromtimestamp(r.wall_ms / 1000, UTC).isoformat(timespec="milliseconds")
        w.writerow((r.node_id, r.epoch, r.seq, r.channel, r.unit, "" if r.value is None else repr(r.value),
                    r.flags, "|".join(flag_names(r.flags)), r.wall_ms, t.replace("+00:00", "Z"), r.boot_ms,
                    r.boot_id, r.received_ms))
    return out.getvalue()


# ---------------------------------------------------------------- running it
def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT`` -> (host, port); raises ValueError naming what was expected."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT such as 127.0.0.1:8080")
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


def make_server(app: Any, *, tls_cert: str | None = None, tls_key: str | None = None) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_keep_alive=KEEP_ALIVE_S)
    return uvicorn.Server(config)


def serve_in_thread(store: Store | str, *, host: str = "127.0.0.1", port: int = 0,
                    tls_cert: str | None = None, tls_key: str | None = None,
                    startup_timeout: float = 10.0, monotonic: Callable[[], float] = time.monotonic,
                    **app_options: Any) -> tuple[str, Callable[[], None]]:
    """Start the receiver in a daemon thread; returns (base URL, stop).

    ``store`` is a `Store` or a URL (then the store is opened here and closed by ``stop``).
    ``app_options`` go to `create_app` (clock, max_body, max_decompressed, window_ms).
    """
    owned = isinstance(store, str)
    st = open_store(store) if isinstance(store, str) else store
    sock = bind(host, port)
    app = create_app(st, **app_options)
    server = make_server(app, tls_cert=tls_cert, tls_key=tls_key)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="central-server",
                              daemon=True)
    thread.start()
    deadline = monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or monotonic() > deadline:
            sock.close()
            raise RuntimeError("central server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        close_app(app)
        if owned:
            st.close()

    return url_of(sock, tls=bool(tls_cert)), stop


def serve_forever(store: Store, listen: str, *, tls_cert: str | None = None, tls_key: str | None = None,
                  announce: Callable[[str], None] = print, **app_options: Any) -> None:
    """Bind ``listen`` (port 0: a free port), announce ``listening on URL``, serve until SIGINT/SIGTERM."""
    host, port = parse_listen(listen)
    sock = bind(host, port)
    app = create_app(store, **app_options)
    server = make_server(app, tls_cert=tls_cert, tls_key=tls_key)
    announce(f"listening on {url_of(sock, tls=bool(tls_cert))}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        close_app(app)
