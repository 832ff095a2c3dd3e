"""The node endpoints: ``POST /v1/ingest`` (store a signed batch) and ``POST /v1/ping``.

Authentication is the node's HMAC (docs/protocol.md), not an operator's account. Once a request's
signature has verified, `arm_receipt` makes `ReceiptMiddleware` (central/app.py) sign the answer,
whatever its status, so the node can tell our answers from a proxy's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from central import integrity
from central.api_shapes import INGEST_DOC, PING_DOC
from central.context import AppContext
from central.errors import Rejected
from central.fleet.desired import on_ingest
from central.http import VERIFIED_SCOPE_KEY
from central.limits import MAX_PING_BODY, IngestLimits
from central.quotas import MAX_PER_NODE, SharedQuotas, stored_bytes
from central.reads import node_json
from central.store import Replay, StoreError, UnknownNode
from node import protocol
from node.protocol import ProtocolError

log = logging.getLogger("streetnode.central")
REPLAY_MESSAGE = "this signature was already used; re-sign with a new timestamp"
ACCEPTED_TYPES = (protocol.CONTENT_TYPE, "application/json")
RECEIPT_SCOPE_KEY = "streetnode.receipt"  # the scope entry ReceiptMiddleware reads
# Worker threads of the node endpoints, apart from the shared pool every read endpoint (and auth
# dependency) runs in: however many reads are in flight, an upload finds a thread (#13, old #11).
INGEST_THREADS = 16


def arm_receipt(request: Request, key: bytes, signature: str) -> None:
    """Sign the response to this request (its signature verified with ``key``)."""
    holder = request.scope.get(RECEIPT_SCOPE_KEY)
    if holder is not None:
        holder["key"], holder["signature"] = key, signature


async def read_body(request: Request, cap: int, *, max_decompressed: int | None = None) -> bytes:
    """The whole body, refusing (413, ``limit``) more than ``cap`` bytes, declared or streamed.

    With ``max_decompressed`` the gzip stream is inflated as it arrives (the output is dropped) and
    a body that would inflate past it is refused at once, not after the last byte came.
    """
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or not length.isascii() or int(length) > cap):
        raise Rejected("too_large", f"body larger than {cap} bytes", limit=cap)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if max_decompressed is not None else None
    inflated = 0
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise Rejected("too_large", f"body larger than {cap} bytes", limit=cap)
        chunks.append(chunk)
        if inflater is not None and max_decompressed is not None and not inflater.eof:
            try:
                inflated += len(inflater.decompress(chunk, max_decompressed + 1 - inflated))
            except zlib.error:
                inflater = None  # decode_body names the problem once the body is complete
                continue
            if inflated > max_decompressed:
                raise Rejected("too_large", f"body decompresses to more than {max_decompressed} bytes",
                               limit=max_decompressed)
    return b"".join(chunks)


class NodeKeys:
    """A short-lived cache of node keys for the checks made from the headers alone (so a node's
    upload does not wait for the store while another node's batch is being written).

    A known node is remembered ``ttl_s``, an unknown id ``unknown_ttl_s`` (``streetnode-central
    node add`` takes effect within it); the signature itself is always checked against the store
    (`authenticate`), so ``node rotate`` takes effect at once.
    """

    def __init__(self, lookup: Callable[[str], bytes | None], *, ttl_s: float = 60.0,
                 unknown_ttl_s: float = 2.0, size: int = 4096,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lookup, self._size, self._monotonic = lookup, size, monotonic
        self._ttl_s, self._unknown_ttl_s = ttl_s, unknown_ttl_s
        self._entries: dict[str, tuple[float, bytes | None]] = {}

    def cached(self, node_id: str) -> tuple[bool, bytes | None]:
        """(found in the cache, key or None for an unknown node)."""
        entry = self._entries.get(node_id)
        if entry is None or entry[0] < self._monotonic():
            return False, None
        return True, entry[1]

    def load(self, node_id: str) -> bytes | None:
        key = self._lookup(node_id)
        if len(self._entries) >= self._size:
            self._entries.clear()  # a flood of made-up ids: start over rather than grow
        ttl = self._ttl_s if key is not None else self._unknown_ttl_s
        self._entries[node_id] = (self._monotonic() + ttl, key)
        return key


async def check_headers(ctx: AppContext, keys: NodeKeys, request: Request,
                        quotas: SharedQuotas | None = None) -> tuple[protocol.AuthHeaders, bytes]:
    """Node id, known node, timestamp window and (with ``quotas``) a quota this process knows to be
    empty from the headers alone, before the body is read.

    A known node's stale timestamp or empty quota is answered with a receipt over the request's
    signature as sent (the body is never read), so the node can believe the answer: re-sign with
    the server time, or wait for ``Retry-After``. Returns the headers and the node's (cached) key.
    """
    try:
        auth = protocol.parse_auth_headers(request.headers)
    except ProtocolError as e:
        raise Rejected("bad_signature", str(e), field=e.field) from None
    found, key = keys.cached(auth.node_id)
    if not found:
        key = await run_in_threadpool(keys.load, auth.node_id)
    if key is None:
        raise Rejected("unknown_node", f"unknown node {auth.node_id!r}; add it with "
                       "'streetnode-central node add ID'")
    now = ctx.now_ms()
    if not protocol.timestamp_fresh(auth.timestamp, now, ctx.limits.window_ms):
        arm_receipt(request, key, auth.signature)
        raise stale(auth.timestamp, now, ctx.limits.window_ms)
    if quotas is not None:
        try:
            quotas.known_empty(auth.node_id)
        except Rejected:
            arm_receipt(request, key, auth.signature)
            raise
    return auth, key  # type: ignore[return-value]  (None was refused above)


async def check_signature(keys: NodeKeys, request: Request, auth: protocol.AuthHeaders, key: bytes,
                          body: bytes) -> None:
    """Refuse (401) a body whose signature does not verify before it waits for an ingest slot, so
    that requests without the key never queue while holding their bodies; a key rotated since it
    was cached is read again once. (`authenticate` checks it again against the store.)

    The HMAC runs in the event loop: about 1 ms for the largest body (`IngestLimits.max_body`), less
    than a hop to a worker thread costs, and no thread of the shared pool (busy with reads) is needed."""
    def verify(with_key: bytes) -> bool:
        return protocol.verify_signature(with_key, request.method, request.url.path, body, auth.timestamp,
                                         auth.signature, node_id=auth.node_id)

    if verify(key):
        return
    fresh = await run_in_threadpool(keys.load, auth.node_id)
    if fresh is None or fresh == key or not verify(fresh):
        raise Rejected("bad_signature", "signature does not match (wrong key, path or body?)")


def stale(timestamp: int, now: int, window_ms: int) -> Rejected:
    return Rejected("stale_timestamp", f"timestamp {timestamp} is {now - timestamp} ms from server time; "
                    "correct the clock by the offset and re-sign", server_time_ms=now, window_ms=window_ms)


def _reject_constant(name: str) -> float:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def check_counts(doc: Any, limits: IngestLimits) -> None:
    """Refuse (413, ``limit`` and ``field``) a document with more records than one batch may hold,
    before its readings are built (a few MiB of JSON can name millions)."""
    if not isinstance(doc, dict):
        return  # decode_document names the problem
    channels = doc.get("channels")
    readings = 0
    for channel in channels if isinstance(channels, list) else ():
        if isinstance(channel, dict):
            readings += _length(channel.get("s"))
    for field, count, limit in (("readings", readings, limits.max_readings),
                                ("gaps", _length(doc.get("gaps")), limits.max_gaps),
                                ("incidents", _length(doc.get("incidents")), limits.max_incidents)):
        if count > limit:
            raise Rejected("too_large", f"{field}: {count} in one batch, at most {limit}; split the batch",
                           field=field, limit=limit)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def decode_limited(body: bytes, limits: IngestLimits) -> protocol.IngestBatch:
    """`node.protocol.decode_body` with the per-batch limits checked between parsing and decoding."""
    text = protocol.gunzip_limited(body, limits.max_decompressed)
    try:
        doc = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("body", f"not valid UTF-8 JSON ({e})", code="bad_json") from None
    del text
    check_counts(doc, limits)
    return protocol.decode_document(doc)


def authenticate(ctx: AppContext, request: Request, body: bytes) -> tuple[protocol.AuthHeaders, int]:
    """Check the signature headers; returns them and the server time (ms). Raises 401 `Rejected`."""
    try:
        auth = protocol.parse_auth_headers(request.headers)
    except ProtocolError as e:
        raise Rejected("bad_signature", str(e), field=e.field) from None
    key = ctx.store.node_key(auth.node_id)
    if key is None:
        raise Rejected("unknown_node", f"unknown node {auth.node_id!r}; add it with "
                       "'streetnode-central node add ID'")
    if not protocol.verify_signature(key, request.method, request.url.path, body, auth.timestamp,
                                     auth.signature, node_id=auth.node_id):
        raise Rejected("bad_signature", "signature does not match (wrong key, path or body?)")
    arm_receipt(request, key, auth.signature)
    request.scope[VERIFIED_SCOPE_KEY] = True  # the guard keeps this connection longest when idle
    now = ctx.now_ms()
    if not protocol.timestamp_fresh(auth.timestamp, now, ctx.limits.window_ms):
        raise stale(auth.timestamp, now, ctx.limits.window_ms)
    return auth, now


def check_gaps(batch: protocol.IngestBatch) -> None:
    """A gap's ``count`` is its seq range, its ``reason`` one the protocol knows (422 naming it).
    A gap over a hole (`protocol.HOLE_REASONS`) may have any count: the store counts what it lacks."""
    for i, gap in enumerate(batch.gaps):
        span = gap.last_seq - gap.first_seq + 1
        if gap.count != span and gap.reason not in protocol.HOLE_REASONS:
            raise Rejected("schema", f"gaps[{i}].count: {gap.count}, but seq {gap.first_seq}..{gap.last_seq} "
                           f"is {span} readings", field=f"gaps[{i}].count")
        if gap.reason not in protocol.GAP_REASONS:
            raise Rejected("schema", f"gaps[{i}].reason: {gap.reason!r} is not one of "
                           f"{', '.join(protocol.GAP_REASONS)}", field=f"gaps[{i}].reason")


def store_batch(ctx: AppContext, batch: protocol.IngestBatch, auth: protocol.AuthHeaders,
                now: int) -> Any:
    try:
        return ctx.store.ingest(batch, signature=auth.signature,
                                expires_ms=auth.timestamp + ctx.limits.window_ms, now_ms=now)
    except Replay:
        raise Rejected("replay", REPLAY_MESSAGE) from None
    except UnknownNode:
        raise Rejected("unknown_node", f"unknown node {auth.node_id!r}") from None


def raise_conflict_alert(ctx: AppContext, batch: protocol.IngestBatch, result: Any, now: int) -> None:
    """The built-in alert (docs/alerts.md): after a batch with conflicts, or from an identity the
    node id had shown before another one; "two devices share node id X" when its identities
    alternate within the last day (central/integrity.py), else "node X's buffer rolled back"."""
    try:
        found = integrity.identities(ctx.store.query(integrity.IDENTITY_SELECT, (batch.node_id,)))
    except StoreError as e:  # the batch is stored: the alert must not fail the upload
        log.warning("alerts: identities of %s unreadable: %s", batch.node_id, e)
        found = []
    clash = integrity.clash(found, now)
    if result.conflicts:
        seqs = result.conflict_seqs  # the first MAX_CONFLICT_SEQS of them
        more = "" if len(seqs) == result.conflicts else " and more"
        detail = (f"{result.conflicts} readings of epoch {batch.epoch} (seq {seqs[0]}..{seqs[-1]}{more}) "
                  "conflict with stored ones")
    elif clash:
        detail = f"{len(found)} identities (hw_serial, machine_id, buffer_id) alternate"
    else:
        return
    ctx.alerts.on_conflict(batch.node_id, clash=clash, detail=detail, now_ms=now)


def raise_hole_alert(ctx: AppContext, batch: protocol.IngestBatch, now: int) -> None:
    """The same built-in alert for a node that found its own buffer rolled back or lost (at its
    start, before any conflict could show it): its ``buffer_rollback``/``buffer_lost`` incident."""
    for incident in batch.incidents:
        if integrity.is_hole(incident.kind):
            ctx.alerts.on_conflict(batch.node_id, clash=False, lost=incident.kind == "buffer_lost",
                                   detail=incident.detail, now_ms=now)
            return


def ingest_sync(ctx: AppContext, request: Request, body: bytes,
                cost: dict[str, int] | None = None) -> dict[str, Any]:
    """Authenticate, decode and store one batch; what it cost the node's quotas is put in ``cost``
    (``readings``, ``stored_bytes``) once it was stored (central/quotas.py charges it)."""
    auth, now = authenticate(ctx, request, body)
    try:
        batch = decode_limited(body, ctx.limits)
    except ProtocolError as e:
        raise Rejected(e.code, str(e), field=e.field) from None
    if batch.node_id != auth.node_id:
        raise Rejected("schema", f"node: {batch.node_id!r} does not match the signing node "
                       f"{auth.node_id!r}", field="node")
    check_gaps(batch)
    result = store_batch(ctx, batch, auth, now)
    if cost is not None:
        cost["readings"] = len(batch)
        cost["stored_bytes"] = stored_bytes(result.stored, result.gaps, result.incidents, batch)
    if ctx.alerts is not None and result.stored:  # after the commit (never raises); a resend of
        ctx.alerts.on_batch(batch, now)  # readings already stored was judged when they came first
    if ctx.alerts is not None and (result.conflicts or result.identity_switched):
        raise_conflict_alert(ctx, batch, result, now)
    elif ctx.alerts is not None and result.incidents:  # new incidents: one may be a rollback or loss
        raise_hole_alert(ctx, batch, now)
    answer = {**result.as_dict(), "readings": len(batch), "batch": batch.batch_id, "epoch": batch.epoch,
              "server_time_ms": now}
    config = on_ingest(ctx.store, auth.node_id, batch.health, now)  # the desired version (docs/fleet.md)
    if config is not None:
        answer["config"] = config
    return answer


def ping_sync(ctx: AppContext, request: Request, body: bytes,
              quotas: SharedQuotas | None = None) -> dict[str, Any]:
    auth, now = authenticate(ctx, request, body)
    if quotas is not None:
        quotas.take(auth.node_id, readings=1)  # a ping writes its signature: not free either
    try:
        ctx.store.accept_signature(auth.node_id, auth.signature,
                                   expires_ms=auth.timestamp + ctx.limits.window_ms, now_ms=now)
    except Replay:
        raise Rejected("replay", REPLAY_MESSAGE) from None
    info = next(iter(ctx.store.list_nodes(auth.node_id)), None)
    return {"ok": True, "protocol": protocol.PROTOCOL_VERSION, "node": auth.node_id,
            "server_time_ms": now, "clock_offset_ms": now - auth.timestamp,
            "status": node_json(info) if info else None}


INGEST_BODY_DOC = {"requestBody": {"required": True, "content": {protocol.CONTENT_TYPE: {"schema": {
    "type": "string", "format": "binary", "description": "gzip of a document valid against /v1/schema"}}}}}


class IngestSlots:
    """At most ``limits.ingest_slots`` bodies decoded and stored at once in this process, and one
    batch per node at a time; a request that waits longer than ``limits.ingest_wait_s`` is refused
    (503 overloaded). With ``quotas``, each batch is first admitted through the database
    (`SharedQuotas.admit`: the node's quotas, and at most `MAX_PER_NODE` batches of a node in
    progress or waiting over every receiver process) and charged when done (`SharedQuotas.finish`).
    The same count is kept in this process too, so a flood of one node's batches into one process is
    refused without a database round trip."""

    def __init__(self, limits: IngestLimits, threads: anyio.CapacityLimiter | None = None,
                 quotas: SharedQuotas | None = None) -> None:
        self.limits = limits
        self.threads = threads
        self.quotas = quotas
        self._semaphore: asyncio.Semaphore | None = None  # made in the server's event loop
        self._per_node: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # node -> (lock, [users])

    async def run(self, node_id: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args, cost)`` in a thread once admitted; ``cost`` is the dict ``fn`` fills with what
        the batch cost (`ingest_sync`)."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.limits.ingest_slots)
        lock, users = self._per_node.setdefault(node_id, (asyncio.Lock(), [0]))
        if users[0] >= MAX_PER_NODE:
            raise self._busy(node_id, users[0])
        users[0] += 1
        deadline = time.monotonic() + self.limits.ingest_wait_s
        try:
            claim = None
            if self.quotas is not None:
                claim = await anyio.to_thread.run_sync(self.quotas.admit, node_id, limiter=self.threads)
            cost: dict[str, int] = {}
            finished = False

            def store_and_charge() -> Any:  # one thread hop for both (the drain's requests, #22)
                nonlocal finished
                try:
                    return fn(*args, cost)
                finally:
                    if claim is not None:
                        finished = True
                        self._finish(node_id, claim, cost)

            try:
                await self._acquire(lock.acquire(), deadline)
                try:
                    await self._acquire(self._semaphore.acquire(), deadline)
                    try:
                        return await anyio.to_thread.run_sync(store_and_charge, limiter=self.threads)
                    finally:
                        self._semaphore.release()
                finally:
                    lock.release()
            finally:
                if claim is not None and not finished:  # refused before it ran (no slot in time)
                    await anyio.to_thread.run_sync(self._finish, node_id, claim, cost, limiter=self.threads)
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._per_node[node_id]

    def _finish(self, node_id: str, claim: str, cost: dict[str, int]) -> None:
        assert self.quotas is not None
        try:
            self.quotas.finish(node_id, claim, readings=cost.get("readings", 0),
                               stored_bytes=cost.get("stored_bytes", 0))
        except StoreError as e:  # the batch's own answer stands; the claim expires (CLAIM_TTL_S)
            log.error("node %s: quota charge not recorded: %s", node_id, e)

    def _busy(self, node_id: str, users: int) -> Rejected:
        retry = self.limits.retry_after_s
        return Rejected("overloaded", f"node {node_id!r} already has {users} batches in progress or "
                        f"waiting; send one at a time (retry after {retry} s)", retry_after_s=retry)

    async def _acquire(self, waiting: Any, deadline: float) -> None:
        try:
            await asyncio.wait_for(waiting, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            retry = self.limits.retry_after_s
            raise Rejected("overloaded", f"receiver overloaded (no ingest slot within "
                           f"{self.limits.ingest_wait_s:g} s); retry after {retry} s",
                           retry_after_s=retry) from None


def router(ctx: AppContext) -> APIRouter:
    api = APIRouter(tags=["node"])
    keys = NodeKeys(ctx.store.node_key)
    threads = anyio.CapacityLimiter(INGEST_THREADS)  # ingest's own threads: reads cannot take them
    quotas = SharedQuotas(ctx.store, ctx.limits, ctx.now_ms)
    ctx.quotas = quotas  # closed with the app (central/app.py close_app)
    slots = IngestSlots(ctx.limits, threads, quotas)

    @api.post(protocol.INGEST_PATH, openapi_extra=INGEST_BODY_DOC, responses=INGEST_DOC)
    async def ingest(request: Request) -> JSONResponse:
        """Store a signed, gzip-compressed v1 batch (see docs/protocol.md)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if ctype not in ACCEPTED_TYPES or encoding != protocol.CONTENT_ENCODING:
            raise Rejected("bad_content_type", f"expected Content-Type {protocol.CONTENT_TYPE} and "
                           f"Content-Encoding gzip, got {ctype or 'none'!r} / {encoding or 'none'!r}")
        auth, key = await check_headers(ctx, keys, request, quotas)
        body = await read_body(request, ctx.limits.max_body, max_decompressed=ctx.limits.max_decompressed)
        await check_signature(keys, request, auth, key, body)  # before queueing for a slot
        try:
            return JSONResponse(await slots.run(auth.node_id, ingest_sync, ctx, request, body))
        except Rejected as e:
            if e.code in ("overloaded", "quota"):  # signed like a stale timestamp, so that the node
                arm_receipt(request, key, auth.signature)  # waits for Retry-After, path not blamed
            raise

    @api.post(protocol.PING_PATH, responses=PING_DOC)
    async def ping(request: Request) -> JSONResponse:
        """Signed round trip for diagnostics: server time and what the central knows of the node."""
        await check_headers(ctx, keys, request, quotas)
        body = await read_body(request, MAX_PING_BODY)
        return JSONResponse(await anyio.to_thread.run_sync(ping_sync, ctx, request, body, quotas,
                                                           limiter=threads))

    return api
