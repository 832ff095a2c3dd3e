"""The console's alert rules page (``/console/rules``): every rule with its source, and for an
admin a form to add or replace a rule and a button to disable / enable one (central/alerts/stored.py:
stored in the database, checked by the same parser as ``[alerts]``, audited).

Forms carry the console's CSRF token and need the session cookie from the same origin; a
read-only user sees the rules and the audit, no forms, and gets 403 if they post anyway."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from central.alerts import stored
from central.alerts.config import KINDS, SEVERITIES, VN_AQI_PM25
from central.auth import SESSION_COOKIE, authenticate
from central.context import AppContext
from central.errors import Rejected
from node.errors import ConfigError

PATH = "/console/rules"
FORM_KEYS = ("name", "kind", "channel", "above", "clear_below", "for_readings", "clear_after", "after",
             "band", "severity", "nodes", "except_nodes")


def router(ctx: AppContext, pages: Any, form_fields: Any) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    def engine() -> Any:
        if ctx.alerts is None:
            raise Rejected("unavailable", "alerts are not available with this store")
        return ctx.alerts

    async def page(request: Request, who: Any, status: int = 200, error: str | None = None,
                   form: dict[str, str] | None = None) -> Response:
        table = await run_in_threadpool(stored.rule_table, engine())
        return pages.render(request, "rules.html", status=status, user=who.name, rules=table["rules"],
                            audit=table["audit"], can_edit=who.has_role("admin"), error=error,
                            form=form or {}, kinds=KINDS, severities=SEVERITIES, bands=list(VN_AQI_PM25),
                            page_config={"page": "rules"})

    async def admin(request: Request) -> tuple[Any, dict[str, str]]:
        form = await form_fields(request)
        if not pages.check_csrf(request, form.get("csrf", "")):
            raise Rejected("forbidden", "csrf: the form's token does not match; reload the page")
        if not request.cookies.get(SESSION_COOKIE):
            raise Rejected("unauthorized", "log in to the console first")
        who = await run_in_threadpool(authenticate, request, ctx)  # a change: Origin/Referer required
        if not who.has_role("admin"):
            raise Rejected("forbidden",
                           f"user {who.name!r} has role {who.role!r}; editing rules needs 'admin'")
        return who, form

    @api.get(PATH)
    async def rules(request: Request) -> Response:
        who = pages.principal(request)
        if who is None:
            return RedirectResponse(f"/console/login?next={PATH}", status_code=303)
        return await page(request, who)

    @api.post(PATH)
    async def save(request: Request) -> Response:
        who, form = await admin(request)
        fields = {k: form.get(k, "") for k in FORM_KEYS}
        try:
            await run_in_threadpool(stored.save_from_form, engine(), fields, who.name)
        except ConfigError as e:
            return await page(request, who, status=400, error=str(e), form=fields)
        return RedirectResponse(PATH, status_code=303)

    @api.post(PATH + "/switch")
    async def switch(request: Request) -> Response:
        who, form = await admin(request)
        enabled = form.get("enabled", "")
        if enabled not in ("0", "1"):
            raise Rejected("bad_request", "enabled: expected 0 or 1", field="enabled")
        try:
            await run_in_threadpool(stored.switch, engine(), form.get("name", ""), enabled == "1", who.name)
        except ConfigError as e:
            return await page(request, who, status=400, error=str(e))
        return RedirectResponse(PATH, status_code=303)

    return api
