"""Bounds on connections and requests, enforced before any work (docs/protocol.md, "Limits").

Two pieces share one `Guard` (built by `central.server.make_server` for one server):

- `guarded_protocol(guard)`: uvicorn's h11 protocol with a connection cap (past it an idle
  connection is closed: one that never completed a request first, then one that only made
  unauthenticated requests, a node's kept-alive connection last, the longest idle first in each;
  when none is idle the newcomer gets ``503 overloaded``), a deadline
  for each request's line and headers (a connection that does not send them in time is closed),
  and uvicorn's own keep-alive timeout and header size cap;
- `GuardMiddleware`: the outermost ASGI layer: a cap on requests in progress (503 + Retry-After),
  a deadline for the whole body (``408 timeout``) and a budget of body bytes held by all requests
  together: past it the request holding the most is refused (503 + Retry-After), so a few stalled
  uploads cannot take the server's memory and a small valid upload still gets through.

Refusals are the JSON error shape of central/errors.py and close the connection.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from central.errors import Rejected
from central.limits import IngestLimits

HEADER_BYTES = 16 * 1024  # request line + headers (h11's incomplete event cap)
# idle connections are closed past the cap in this order: never completed a request, made only
# unauthenticated ones, carried a verified node signature (a node's kept-alive connection)
TIERS = ("fresh", "served", "node")
VERIFIED_SCOPE_KEY = "streetnode.verified"  # set by central.ingest once a node signature verified


class QuietRepeats(logging.Filter):
    """Lets one line of each kind of repeated warning through per ``every_s`` (an attacker's garbage
    would otherwise write one log line per request), with how many were left out since.

    A kind is the message's format string and its first ``key_args`` arguments (e.g. the status and
    error code of a refusal), so a flood of one kind never hides another. `flush` writes what is
    still left out (at shutdown), so every line held back is counted somewhere in the log.
    """

    def __init__(self, every_s: float = 60.0, monotonic: Callable[[], float] = time.monotonic,
                 key_args: int = 0) -> None:
        super().__init__()
        self.every_s, self.monotonic, self.key_args = every_s, monotonic, key_args
        # kind -> (when last let through, left out since, that line's text)
        self._last: dict[str, tuple[float, int, str]] = {}

    def forget(self) -> None:
        """Let the next line of each kind through (a test that wants to see one)."""
        self._last.clear()

    def _kind(self, record: logging.LogRecord) -> str:
        args = record.args if isinstance(record.args, tuple) else ()
        return "\x1f".join([str(record.msg), *map(str, args[:self.key_args])])

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or getattr(record, "quiet_flush", False):
            return True
        key = self._kind(record)
        now = self.monotonic()
        last, left_out, text = self._last.get(key, (None, 0, ""))
        if last is not None and now - last < self.every_s:
            self._last[key] = (last, left_out + 1, text)
            return False
        text = record.getMessage()
        if left_out and last is not None:
            record.msg, record.args = f"{text} ({left_out} more in the last {now - last:.0f} s)", None
        self._last[key] = (now, 0, text)
        return True

    def flush(self, logger: logging.Logger) -> None:
        """Write one line per kind with lines still left out ("... (N more in the last S s)")."""
        now = self.monotonic()
        for key, (last, left_out, text) in list(self._last.items()):
            if left_out:
                self._last[key] = (now, 0, text)
                logger.warning("%s (%d more in the last %.0f s)", text, left_out, now - last,
                               extra={"quiet_flush": True})


QUIET_REPEATS = QuietRepeats()
SHED_QUIET = QuietRepeats(key_args=2)  # one kind per status and error code
SHED_LOG = logging.getLogger("streetnode.central.shed")  # 5xx refusals: one line each, floods summed
SHED_LOG.addFilter(SHED_QUIET)


def flush_quiet_logs() -> None:
    """Write the lines `QUIET_REPEATS` and `SHED_QUIET` still hold back (the receiver stops)."""
    SHED_QUIET.flush(SHED_LOG)
    QUIET_REPEATS.flush(logging.getLogger("uvicorn.error"))


def quiet_uvicorn_warnings() -> None:
    """Install `QUIET_REPEATS` on uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if QUIET_REPEATS not in logger.filters:
        logger.addFilter(QUIET_REPEATS)


class Shed(Rejected):
    """A request refused because the receiver protects itself (503 overloaded / 408 timeout)."""


def _overloaded(what: str, retry_after_s: int) -> Shed:
    return Shed("overloaded", f"receiver overloaded ({what}); retry after {retry_after_s} s",
                retry_after_s=retry_after_s)


class _Holder:
    """One request's share of the body budget."""

    __slots__ = ("held", "receiving", "refused")

    def __init__(self) -> None:
        self.held = 0  # body bytes received so far (held until the request ends)
        self.receiving = True  # the body is not complete yet (only such requests are refused)
        self.refused: asyncio.Event | None = None  # set when the budget refuses this request


class Guard:
    """What the connections and requests of one server count against its limits."""

    def __init__(self, limits: IngestLimits, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.monotonic = limits, monotonic
        self.requests = 0  # in progress
        self.held = 0  # body bytes held by every request in progress
        self.holders: dict[int, _Holder] = {}
        self._ids = itertools.count()
        self.shed = 0  # requests refused by the guard (503/408), for tests and logs
        self.evicted_connections = 0
        # connections without a request in progress, by tier (`TIERS`), longest idle first
        self.idle: list[dict[GuardedProtocol, None]] = [{} for _ in TIERS]

    def set_idle(self, conn: GuardedProtocol) -> None:
        self.idle[conn.tier][conn] = None

    def set_busy(self, conn: GuardedProtocol) -> None:
        self.idle[conn.tier].pop(conn, None)

    def is_idle(self, conn: GuardedProtocol) -> bool:
        return conn in self.idle[conn.tier]

    def charge(self, holder: _Holder, size: int) -> None:
        """Add ``size`` bytes to ``holder``; past the budget refuse the largest unfinished body."""
        holder.held += size
        self.held += size
        budget = self.limits.body_budget
        while self.held > budget:
            victim = max((h for h in self.holders.values() if h.receiving and h.refused is not None
                          and not h.refused.is_set()), key=lambda h: h.held, default=None)
            if victim is None or victim is holder or victim.held <= holder.held:
                raise _overloaded("request bodies over the memory budget", self.limits.retry_after_s)
            victim.refused.set()  # type: ignore[union-attr]  (checked above)
            self._release(victim)

    def _release(self, holder: _Holder) -> None:
        self.held -= holder.held
        holder.held = 0
        holder.receiving = False


def _error_messages(status: int, body: dict[str, Any], retry_after_s: int | None) -> list[dict[str, Any]]:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
               (b"content-length", str(len(payload)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": payload}]


def log_5xx(exc: Rejected, where: str) -> None:
    """One warning line for a 5xx refusal (a flood's are summed: `QUIET_REPEATS`)."""
    if exc.status >= 500:
        SHED_LOG.warning("%d %s %s: %s", exc.status, exc.code, where, exc.message)


async def _send_error(send: Any, exc: Rejected) -> None:
    log_5xx(exc, "(guard)")
    retry = exc.extra.get("retry_after_s")
    for message in _error_messages(exc.status, {"error": exc.code, "message": exc.message, **exc.extra},
                                   retry if isinstance(retry, int) else None):
        await send(message)


class GuardMiddleware:
    """Requests in progress, body deadline and body budget (pure ASGI, outermost)."""

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard, limits = self.guard, self.guard.limits
        head_bytes = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + sum(
            len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
        if head_bytes > HEADER_BYTES:  # arrived in one piece, so h11's own cap did not see it
            await _send_error(send, Rejected("bad_request", f"request line and headers over {HEADER_BYTES} "
                                             "bytes", limit=HEADER_BYTES))
            return
        if guard.requests >= limits.max_requests:
            guard.shed += 1
            await _send_error(send, _overloaded("too many requests in progress", limits.retry_after_s))
            return
        holder = _Holder()
        holder.refused = asyncio.Event()
        key = next(guard._ids)
        guard.holders[key] = holder
        guard.requests += 1
        deadline = guard.monotonic() + limits.body_timeout_s
        failure: list[Rejected] = []  # what the guard refused this request for, once

        async def guarded_receive() -> Any:
            if failure:
                raise failure[0]
            if not holder.receiving:
                return await receive()  # after the body: only http.disconnect is left to wait for
            remaining = deadline - guard.monotonic()
            message = None
            if remaining > 0:
                message = await _receive_until(receive, holder.refused, remaining)  # type: ignore[arg-type]
            if message is None:
                if holder.refused.is_set():  # type: ignore[union-attr]
                    exc: Rejected = _overloaded("request bodies over the memory budget",
                                                limits.retry_after_s)
                else:
                    exc = Shed("timeout", f"request body not received within {limits.body_timeout_s:g} s",
                               limit=limits.body_timeout_s)
                return _fail(exc)
            if message["type"] == "http.request":
                try:
                    guard.charge(holder, len(message.get("body", b"")))
                except Rejected as e:
                    return _fail(e)
                if not message.get("more_body", False):
                    holder.receiving = False
            return message

        def _fail(exc: Rejected) -> Any:
            guard.shed += 1
            failure.append(exc)
            raise exc

        started = False
        replaced = False
        has_body = any(name in (b"transfer-encoding", b"content-length") and value.strip() != b"0"
                       for name, value in scope.get("headers", ()))

        async def guarded_send(message: Any) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if failure and not started and message["type"] == "http.response.start":
                replaced = True  # whatever the route made of our refusal, the client gets ours
                await _send_error(send, failure[0])
                return
            if message["type"] == "http.response.start":
                started = True
                if has_body and holder.receiving:  # answered before the body was read: do not read it
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Rejected as e:
            if started or replaced or e is not (failure[0] if failure else None):
                raise
            await _send_error(send, e)
        finally:
            guard.requests -= 1
            guard._release(holder)
            del guard.holders[key]


async def _receive_until(receive: Any, refused: asyncio.Event, timeout: float) -> Any:
    """``await receive()``, or None when ``refused`` is set or ``timeout`` passes first."""
    got = asyncio.ensure_future(receive())
    stop = asyncio.ensure_future(refused.wait())
    try:
        done, _ = await asyncio.wait((got, stop), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not got.done():
            got.cancel()
    return got.result() if got in done else None


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a deadline for each request's head."""

    guard: Guard  # set on the subclass `guarded_protocol` makes

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._over_cap = False
        self._app = self.app
        self.app = self._serve  # uvicorn runs self.app for each request of this connection
        self.tier = 0
        if len(self.connections) > self.guard.limits.max_connections and not self._evict_idle():
            self._over_cap = True
        self.guard.set_idle(self)
        self._start_head_timer()

    def _evict_idle(self) -> bool:
        """Close an idle connection, the lowest tier and longest idle first; False if none."""
        for idle in self.guard.idle:
            while idle:
                oldest = next(iter(idle))
                del idle[oldest]
                if not oldest.transport.is_closing():  # (closing ones leave at connection_lost anyway)
                    oldest._close_idle()
                    self.guard.evicted_connections += 1
                    return True
        return False

    def _close_idle(self) -> None:
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        self.transport.close()

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.guard.limits.head_timeout_s, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.guard.is_idle(self) and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.guard.is_idle(self):  # the next request's head begins
            self._start_head_timer()
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self.guard.set_busy(self)
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (or headers over `HEADER_BYTES`): the JSON error, then close."""
        payload = json.dumps({"error": "bad_request", "message": f"{msg} (headers are limited to "
                              f"{HEADER_BYTES} bytes)", "limit": HEADER_BYTES}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                             b"connection: close\r\ncontent-length: " + str(len(payload)).encode()
                             + b"\r\n\r\n" + payload)
        self.transport.close()

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        self._cancel_head_timer()
        self.guard.set_busy(self)
        try:
            if self._over_cap:
                self.guard.shed += 1
                await _send_error(send, _overloaded("too many connections",
                                                    self.guard.limits.retry_after_s))
                return
            await self._app(scope, receive, send)
        finally:
            self.tier = max(self.tier, 2 if scope.get(VERIFIED_SCOPE_KEY) else 1)
            if not self.transport.is_closing():
                self.guard.set_idle(self)  # the most recently idle of its tier: evicted last


def guarded_protocol(guard: Guard) -> type[GuardedProtocol]:
    """A `GuardedProtocol` class bound to ``guard`` (uvicorn's ``Config(http=...)``)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"guard": guard})
