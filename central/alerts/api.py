"""``/v1/alerts``: the operator read API of alerts (role read) and acknowledgement (role admin).

* ``GET /v1/alerts?state=active|open|acknowledged|resolved|all&node=ID&limit=N&history=true`` —
  newest first (default: active = open or acknowledged; at most 1000); ``history=true`` adds each
  alert's events (the console's node page: one query, not one per alert).
* ``GET /v1/alerts/nodes`` — each node's reporting / buffering / silent state.
* ``GET /v1/alerts/rules`` — the rules (file and console; in force and disabled) and their audit.
* ``GET /v1/alerts/{id}`` — the alert, its history (one event per transition, late ones marked)
  and its deliveries per sink.
* ``POST /v1/alerts/{id}/ack`` (admin; body ``{"note": "..."}`` optional) — open -> acknowledged;
  409 ``conflict`` if it is not open.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from central.accounts import Principal
from central.alerts.engine import AlertEngine, AlertError
from central.auth import require_role
from central.context import AppContext
from central.errors import Rejected, register_status

register_status("conflict", 409)
STATES = {
    "active": ("open", "acknowledged"),
    "open": ("open",),
    "acknowledged": ("acknowledged",),
    "resolved": ("resolved",),
    "all": ("open", "acknowledged", "resolved"),
}
_reader = require_role("read")
_admin = require_role("admin")


def router(ctx: AppContext) -> APIRouter:
    api = APIRouter(tags=["alerts"])

    def engine() -> AlertEngine:
        if ctx.alerts is None:
            raise Rejected("unavailable", "alerts are not available with this store")
        return ctx.alerts  # type: ignore[no-any-return]

    @api.get("/v1/alerts")
    async def list_alerts(
        _p: Annotated[Principal, Depends(_reader)],
        state: str = "active",
        node: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        history: bool = False,
    ) -> dict[str, Any]:
        """Alerts, newest first (with ``history=true``, each with its events)."""
        if state not in STATES:
            raise Rejected("bad_query", f"state: expected one of {', '.join(STATES)}", field="state")
        db = engine().db

        def run() -> list[dict[str, Any]]:
            alerts = db.list_alerts(STATES[state], node, limit)
            if history:
                events = db.histories([a["id"] for a in alerts])
                for alert in alerts:
                    alert["history"] = events.get(alert["id"], [])
            return alerts

        return {"alerts": await run_in_threadpool(run), "state": state}

    @api.get("/v1/alerts/nodes")
    async def node_states(_p: Annotated[Principal, Depends(_reader)]) -> dict[str, Any]:
        """Each node's reporting / buffering / silent state (by the first silent rule)."""
        return {"nodes": await run_in_threadpool(engine().node_states)}

    @api.get("/v1/alerts/rules")
    async def rules(_p: Annotated[Principal, Depends(_reader)]) -> dict[str, Any]:
        """The rules in force and the disabled ones (``[alerts]`` of the config file, overridden or
        added to by an admin in the console: central/alerts/stored.py) and the audit of changes."""
        from central.alerts.stored import rule_table

        return await run_in_threadpool(rule_table, engine())

    @api.get("/v1/alerts/{alert_id}")
    async def get_alert(alert_id: int, _p: Annotated[Principal, Depends(_reader)]) -> dict[str, Any]:
        """One alert with its history and deliveries."""
        db = engine().db

        def run() -> dict[str, Any]:
            alert = db.read(lambda conn: db.get(conn, alert_id))
            if alert is None:
                raise Rejected("not_found", f"no alert {alert_id}")
            return {**alert, "history": db.history(alert_id), "deliveries": db.deliveries(alert_id)}

        return await run_in_threadpool(run)

    @api.post("/v1/alerts/{alert_id}/ack")
    async def acknowledge(
        alert_id: int, request: Request, principal: Annotated[Principal, Depends(_admin)]
    ) -> dict[str, Any]:
        """Acknowledge an open alert (admin)."""
        note = None
        if await request.body():
            try:
                data = await request.json()
            except ValueError:
                raise Rejected("bad_request", 'body: expected JSON such as {"note": "..."}') from None
            note = data.get("note") if isinstance(data, dict) else None
            if note is not None and (not isinstance(note, str) or len(note) > 1000):
                raise Rejected(
                    "bad_request", "note: expected a string of at most 1000 characters", field="note"
                )
        try:
            return await run_in_threadpool(engine().acknowledge, alert_id, principal.name, note)
        except AlertError as e:
            raise Rejected(e.code, str(e)) from None

    return api
