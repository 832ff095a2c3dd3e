"""``POST /v1/config``: a node fetches its desired configuration with a signed request;
``GET /v1/config/status`` (role read): the fleet's configuration at a glance (the console, tools).

The answer carries the layers (TOML text, group first) and their version and hash; like every
answer to a request whose signature verified, it carries the node-key receipt
(``X-Streetnode-Receipt``), so a node believes only its own central's configuration.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from central.api_shapes import object_doc
from central.auth import require_role
from central.context import AppContext
from central.errors import Rejected
from central.fleet.desired import desired
from central.fleet.push import check_name
from central.fleet.status import fleet_status, rollout_dict
from central.ingest import REPLAY_MESSAGE, authenticate, read_body
from central.store import Replay
from node.errors import ConfigError
from node.protocol import CONFIG_PATH

MAX_CONFIG_REQUEST = 4096


def config_sync(ctx: AppContext, request: Request, body: bytes) -> dict[str, Any]:
    auth, now = authenticate(ctx, request, body)
    try:
        ctx.store.accept_signature(auth.node_id, auth.signature,
                                   expires_ms=auth.timestamp + ctx.limits.window_ms, now_ms=now)
    except Replay:
        raise Rejected("replay", REPLAY_MESSAGE) from None
    want = ctx.store.transaction(lambda tx: desired(tx, auth.node_id))
    return {**want.as_wire(), "node": auth.node_id, "server_time_ms": now}


def router(ctx: AppContext) -> APIRouter:
    api = APIRouter(tags=["node"])

    @api.post(CONFIG_PATH, responses=object_doc("the node's desired configuration layers (docs/fleet.md)",
                                                 "node", "server_time_ms"))
    async def fetch_config(request: Request) -> JSONResponse:
        """The node's desired configuration layers (signed request; the answer carries a receipt)."""
        body = await read_body(request, MAX_CONFIG_REQUEST)
        return JSONResponse(await run_in_threadpool(config_sync, ctx, request, body))

    @api.get(CONFIG_PATH + "/status", tags=["read"], dependencies=[Depends(require_role("read"))])
    def config_status(group: str | None = Query(None, max_length=64)) -> dict[str, Any]:
        """Per node: desired and applied configuration version, origin, hash, health check state, last
        failure; the rollouts in progress (`streetnode-central config status` as JSON)."""
        if group is not None:
            try:
                check_name(group, "group")
            except ConfigError as e:
                raise Rejected("bad_query", str(e), field="group") from None
        nodes, rollouts = fleet_status(ctx.store, group)
        return {"nodes": [n.as_dict() for n in nodes], "rollouts": [rollout_dict(r) for r in rollouts]}

    return api
