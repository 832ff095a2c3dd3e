"""The node endpoints: ``POST /v1/ingest`` (store a signed batch) and ``POST /v1/ping``.

Authentication is the node's HMAC (docs/protocol.md), not an operator's account. Once a request's
signature has verified, `arm_receipt` makes `ReceiptMiddleware` (central/app.py) sign the answer,
whatever its status, so the node can tell our answers from a proxy's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from central.context import AppContext
from central.errors import Rejected
from central.fleet.desired import on_ingest
from central.limits import MAX_PING_BODY
from central.reads import node_json
from central.store import Replay, UnknownNode
from node import protocol
from node.protocol import ProtocolError

REPLAY_MESSAGE = "this signature was already used; re-sign with a new timestamp"
ACCEPTED_TYPES = (protocol.CONTENT_TYPE, "application/json")
RECEIPT_SCOPE_KEY = "streetnode.receipt"  # the scope entry ReceiptMiddleware reads


def arm_receipt(request: Request, key: bytes, signature: str) -> None:
    """Sign the response to this request (its signature verified with ``key``)."""
    holder = request.scope.get(RECEIPT_SCOPE_KEY)
    if holder is not None:
        holder["key"], holder["signature"] = key, signature


async def read_body(request: Request, cap: int) -> bytes:
    """The whole body, refusing (413, ``limit``) more than ``cap`` bytes, declared or streamed."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or not length.isascii() or int(length) > cap):
        raise Rejected("too_large", f"body larger than {cap} bytes", limit=cap)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise Rejected("too_large", f"body larger than {cap} bytes", limit=cap)
        chunks.append(chunk)
    return b"".join(chunks)


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
    now = ctx.now_ms()
    window_ms = ctx.limits.window_ms
    if not protocol.timestamp_fresh(auth.timestamp, now, window_ms):
        raise Rejected("stale_timestamp", f"timestamp {auth.timestamp} is {now - auth.timestamp} ms "
                       f"from server time; correct the clock by the offset and re-sign",
                       server_time_ms=now, window_ms=window_ms)
    return auth, now


def ingest_sync(ctx: AppContext, request: Request, body: bytes) -> dict[str, Any]:
    auth, now = authenticate(ctx, request, body)
    try:
        batch = protocol.decode_body(body, max_decompressed=ctx.limits.max_decompressed)
    except ProtocolError as e:
        raise Rejected(e.code, str(e), field=e.field) from None
    if batch.node_id != auth.node_id:
        raise Rejected("schema", f"node: {batch.node_id!r} does not match the signing node "
                       f"{auth.node_id!r}", field="node")
    try:
        result = ctx.store.ingest(batch, signature=auth.signature,
                                  expires_ms=auth.timestamp + ctx.limits.window_ms, now_ms=now)
    except Replay:
        raise Rejected("replay", REPLAY_MESSAGE) from None
    except UnknownNode:
        raise Rejected("unknown_node", f"unknown node {auth.node_id!r}") from None
    answer = {**result.as_dict(), "readings": len(batch), "batch": batch.batch_id, "epoch": batch.epoch,
              "server_time_ms": now}
    config = on_ingest(ctx.store, auth.node_id, batch.health, now)  # the desired version (docs/fleet.md)
    if config is not None:
        answer["config"] = config
    return answer


def ping_sync(ctx: AppContext, request: Request, body: bytes) -> dict[str, Any]:
    auth, now = authenticate(ctx, request, body)
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


def router(ctx: AppContext) -> APIRouter:
    api = APIRouter(tags=["node"])

    @api.post(protocol.INGEST_PATH, openapi_extra=INGEST_BODY_DOC)
    async def ingest(request: Request) -> JSONResponse:
        """Store a signed, gzip-compressed v1 batch (see docs/protocol.md)."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if ctype not in ACCEPTED_TYPES or encoding != protocol.CONTENT_ENCODING:
            raise Rejected("bad_content_type", f"expected Content-Type {protocol.CONTENT_TYPE} and "
                           f"Content-Encoding gzip, got {ctype or 'none'!r} / {encoding or 'none'!r}")
        body = await read_body(request, ctx.limits.max_body)
        return JSONResponse(await run_in_threadpool(ingest_sync, ctx, request, body))

    @api.post(protocol.PING_PATH)
    async def ping(request: Request) -> JSONResponse:
        """Signed round trip for diagnostics: server time and what the central knows of the node."""
        body = await read_body(request, MAX_PING_BODY)
        return JSONResponse(await run_in_threadpool(ping_sync, ctx, request, body))

    return api
