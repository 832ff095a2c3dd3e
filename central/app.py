"""The receiver's ASGI app: `create_app(store, ...)` composes one router per area.

Every answer, a 500 included, is the JSON error shape of central/errors.py; no database internals
reach a client; every 5xx is logged (one line, with a traceback only when STREETNODE_DEBUG=1).
Every response carries ``X-Streetnode-Server-Time`` (ms) and uvicorn's ``Date``; the answer to a
request whose node signature verified carries ``X-Streetnode-Receipt`` (contract 1, brief).

There is no ``/docs`` or ``/redoc``: they are browser apps loaded from a CDN, and bundling them
would put a large third-party JavaScript app on an Internet-facing receiver to keep patched.
``/openapi.json`` (role read) works with any OpenAPI viewer run locally (docs/central.md).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware import Middleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from central import auth, ingest, reads
from central.accounts import Accounts
from central.alerts import api as alerts_api
from central.api_shapes import HEALTHZ_DOC, OPENAPI_DOC, shape_errors
from central.console.config import ConsoleConfig
from central.console.mount import build_console
from central.context import AppContext
from central.errors import Rejected, error_body, error_response
from central.fleet import router as fleet_router
from central.http import flush_quiet_logs, log_5xx
from central.ingest import RECEIPT_SCOPE_KEY
from central.limits import IngestLimits
from central.readpool import ReadBusy, ReadTooSlow
from central.sta import build_sta
from central.store import Store, StoreError
from node import protocol

log = logging.getLogger("streetnode.central")
RETRY_AFTER_UNAVAILABLE_S = 10
RETRY_AFTER_BUSY_S = 1


def debug_enabled() -> bool:
    return os.environ.get("STREETNODE_DEBUG", "") not in ("", "0")


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


class ReceiptMiddleware:
    """Signs the answer to a request whose node signature verified (`ingest.arm_receipt`).

    Only such answers are buffered (they are small JSON); every other response streams through.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder: dict[str, Any] = {}
        scope[RECEIPT_SCOPE_KEY] = holder
        held: list[Any] = []  # [start message, body chunks...] of an answer to sign

        async def send_signed(message: Any) -> None:
            if message["type"] == "http.response.start" and "key" in holder:
                held.append(message)
                return
            if message["type"] == "http.response.body" and held:
                held.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start, body = held[0], b"".join(held[1:])
                receipt = protocol.sign_receipt(holder["key"], holder["signature"], body)
                start["headers"] = [*start.get("headers", []),
                                    (protocol.HEADER_RECEIPT.lower().encode(), receipt.encode())]
                held.clear()
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_signed)


class InternalErrorMiddleware:
    """The last line: an unexpected exception becomes a logged JSON 500 (never plain text)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def track(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, track)
        except ClientDisconnect:  # the client hung up mid-body: nobody to answer, nothing went wrong here
            log.debug("client gone before its body was read: %s %s", scope.get("method"), scope.get("path"))
        except Exception as e:  # the HTTP edge: every unexpected error ends here
            incident = secrets.token_hex(4)
            where = f"{scope.get('method')} {scope.get('path')}"
            if debug_enabled():
                log.error("500 internal [%s] %s:\n%s", incident, where, traceback.format_exc())
            else:
                log.error("500 internal [%s] %s: %s: %s (STREETNODE_DEBUG=1 for a traceback)", incident,
                          where, type(e).__name__, " ".join(str(e).split())[:300])
            if started:  # too late for an error body: the connection is closed by the server
                raise
            response = JSONResponse(error_body("internal", f"internal error (logged as {incident}); "
                                               "retry later", incident=incident), status_code=500)
            await response(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def on_rejected(request: Request, exc: Rejected) -> JSONResponse:
        log_5xx(exc, f"{request.method} {request.url.path}")  # every 5xx is logged (503 overloaded...)
        return error_response(exc.code, exc.message, **exc.extra)

    @app.exception_handler(StoreError)
    async def on_store_error(request: Request, exc: StoreError) -> JSONResponse:
        if isinstance(exc, ReadTooSlow):  # the request asked for too much: narrowing it helps
            return error_response("too_expensive", str(exc))
        if isinstance(exc, ReadBusy):  # every read connection busy: shed, the writer is not involved
            log.warning("503 busy %s %s: %s", request.method, request.url.path, exc)
            return error_response("unavailable", str(exc), headers={"Retry-After": str(RETRY_AFTER_BUSY_S)})
        log.warning("503 unavailable %s %s: %s", request.method, request.url.path, exc)
        return error_response("unavailable", "storage unavailable; retry later",
                              headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)})

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in err.get("loc", ())]
        code = "bad_request" if loc[:1] == ["body"] else "bad_query"
        field = ".".join(loc[1:] if loc[:1] in (["query"], ["path"], ["body"]) else loc)
        return error_response(code, f"{field}: {err.get('msg', 'invalid')}", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        message = "no such path" if exc.status_code == 404 else str(exc.detail)
        if exc.status_code >= 500:
            log.error("%d %s", exc.status_code, exc.detail)
        return error_response(code, message, status=exc.status_code, headers=exc.headers)


def close_app(app: FastAPI) -> None:
    """Release what `create_app` opened besides the store (the SensorThings, console and alerts
    read connections, the quotas' connection) and write the log lines still held back
    (`central.http.flush_quiet_logs`)."""
    flush_quiet_logs()
    for name in ("sta_db", "console_db"):
        db = getattr(app.state, name, None)
        if db is not None:
            db.close()
    if app.state.central.alerts is not None:
        app.state.central.alerts.db.close()
    if app.state.central.quotas is not None:
        app.state.central.quotas.close()


def create_app(store: Store, *, clock: Callable[[], float] = time.time, max_body: int | None = None,
               max_decompressed: int | None = None, window_ms: int | None = None,
               limits: IngestLimits | None = None, accounts: Accounts | None = None,
               extra_routers: Sequence[Callable[[AppContext], APIRouter]] = (),
               console: ConsoleConfig | None = None, alerts: Any = None) -> FastAPI:
    """The receiver's ASGI app over ``store``; ``clock`` gives the server's wall time in seconds.

    ``limits`` (central/limits.py) with ``max_body``, ``max_decompressed`` and ``window_ms``, when
    given, replacing its fields; `central.server.make_server` enforces the connection limits.
    ``console``: the ``[console]`` settings of the operator console (defaults when None).
    ``extra_routers``: more ``router(ctx)`` factories (tests; an area under development).
    ``alerts``: the `AlertEngine` of ``[alerts]`` (default: no rules, the read API only).
    """
    overrides = {name: value for name, value in (("max_body", max_body), ("max_decompressed",
                 max_decompressed), ("window_ms", window_ms)) if value is not None}
    limits = dataclasses.replace(limits or IngestLimits(), **overrides)
    if alerts is None:
        from central.alerts.config import AlertsConfig
        from central.alerts.db import AlertsDb
        from central.alerts.engine import AlertEngine

        try:
            alerts = AlertEngine(AlertsConfig(), AlertsDb.for_store(store), clock=clock)
        except AttributeError:  # a store that is neither SQLite nor PostgreSQL (a test's stand-in)
            alerts = None
    ctx = AppContext(store=store, accounts=accounts or Accounts(store, clock=clock), clock=clock,
                     limits=limits, alerts=alerts)
    app = FastAPI(title="streetnode central", version=str(protocol.PROTOCOL_VERSION),
                  description="Receives signed, gzip-compressed v1 batches from streetnode nodes; "
                  "serves them to the city's operators (docs/protocol.md, docs/central.md).",
                  docs_url=None, redoc_url=None, openapi_url=None,
                  middleware=[Middleware(ServerTimeMiddleware, clock=clock), Middleware(ReceiptMiddleware),
                              Middleware(InternalErrorMiddleware)])
    app.state.central = ctx
    _install_error_handlers(app)
    generate_openapi = app.openapi

    def openapi_document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = shape_errors(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi_document  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"], responses=HEALTHZ_DOC)
    def healthz() -> JSONResponse:
        """Liveness and storage reachability (open to all: says nothing about nodes). On a read
        connection: a long upload does not make the receiver look dead."""
        store.query("SELECT 1")
        return JSONResponse({"ok": True, "protocol": protocol.PROTOCOL_VERSION,
                             "server_time_ms": ctx.now_ms()})

    @app.get("/openapi.json", tags=["read"], dependencies=[Depends(auth.require_role("read"))],
             responses=OPENAPI_DOC)
    def openapi() -> JSONResponse:
        """This API's OpenAPI document."""
        return JSONResponse(app.openapi())

    app.include_router(ingest.router(ctx))
    app.include_router(reads.router(ctx))
    app.include_router(auth.router(ctx))
    app.include_router(alerts_api.router(ctx))
    app.include_router(fleet_router.router(ctx))
    sta_api, app.state.sta_db = build_sta(store, dependencies=[Depends(auth.require_role("read"))])
    app.include_router(sta_api)
    console_routers, app.state.console_db = build_console(ctx, console or ConsoleConfig())
    for console_router in console_routers:
        app.include_router(console_router)
    for make_router in extra_routers:
        app.include_router(make_router(ctx))
    return app
