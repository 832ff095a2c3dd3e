"""The console's HTML pages: login (form + CSRF), overview, node page, language switch, static files.

Pages are server-rendered Jinja2 templates (`templates/`) with a little plain JavaScript
(`static/`, no build chain; uPlot vendored). Their data comes from the operator read API
(central/console/api.py) with the session cookie.

- **Session**: ``POST /console/login`` checks the password (central/accounts.py) and sets the
  session cookie of central/auth.py (HttpOnly, SameSite=Strict, Secure over HTTPS).
- **CSRF**: every form carries a token equal to the ``streetnode_csrf`` cookie (random, HttpOnly,
  SameSite=Strict; the double-submit pattern), compared in constant time; a POST whose
  ``Origin``/``Referer`` names another site is refused too.
- **Headers**: a Content-Security-Policy allowing only this origin (plus the tile server, if
  configured), no framing, no referrer leaks.
- **Extending**: the overview and node pages render the panel templates listed in
  `OVERVIEW_PANELS` / `NODE_PANELS` in order; an area adds its panel template there (and a
  ``<script src>`` inside it).
- **Alerts** (central/alerts): the overview's active-alerts panel and markers, the node page's
  alerts with their history; an admin acknowledges with ``POST /console/alerts/{id}/ack`` (a form
  with the CSRF token; read-only users get no button and a 403).
"""

from __future__ import annotations

import hmac
import importlib.resources
import json
import secrets
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from central.accounts import Principal
from central.auth import SESSION_COOKIE, authenticate
from central.console.config import LANGUAGES, ConsoleConfig
from central.console.i18n import LANG_COOKIE, MESSAGES, pick_language
from central.context import AppContext
from central.errors import Rejected
from central.ingest import read_body

CSRF_COOKIE = "streetnode_csrf"
PREFIX = "/console"
OVERVIEW_PANELS = ["panels/overview_alerts.html", "panels/overview_map.html", "panels/overview_table.html"]
NODE_PANELS = ["panels/node_health.html", "panels/node_alerts.html", "panels/node_charts.html",
               "panels/node_timeline.html"]
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}
RANGES = ("6h", "24h", "7d", "30d")
MAX_FORM_BYTES = 8192


def _templates() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("central.console", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def _static_files() -> dict[str, bytes]:
    root = importlib.resources.files("central.console").joinpath("static")
    return {entry.name: entry.read_bytes() for entry in root.iterdir()
            if entry.is_file() and any(entry.name.endswith(ext) for ext in STATIC_TYPES)}


def _safe_next(target: str | None) -> str:
    """Only a path of this console (no scheme, no host): never an open redirect."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//") or "\\" in target:
        return PREFIX + "/"
    return target


def _same_origin_or_absent(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    parts = urlsplit(source)
    return parts.netloc == request.headers.get("host") and parts.scheme in ("http", "https")


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a small ``application/x-www-form-urlencoded`` body (first value of each)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Rejected("bad_content_type", "expected a form (application/x-www-form-urlencoded)")
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise Rejected("bad_request", "form: expected UTF-8 url-encoded fields") from None
    found: dict[str, str] = {}
    for key, value in fields:
        found.setdefault(key, value)
    return found


class Pages:
    """Renders the pages for one app (config, templates and static files loaded once)."""

    def __init__(self, ctx: AppContext, config: ConsoleConfig) -> None:
        self.ctx, self.config = ctx, config
        self.env = _templates()
        self.static = _static_files()

    def language(self, request: Request) -> str:
        return pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"),
                             self.config.language)

    def csp(self) -> str:
        images = "'self' data:"
        if self.config.tile_url.startswith(("http://", "https://")):
            parts = urlsplit(self.config.tile_url.replace("{", "").replace("}", ""))
            images += f" {parts.scheme}://{parts.netloc}"
        return (f"default-src 'self'; img-src {images}; style-src 'self'; script-src 'self'; "
                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        lang = self.language(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        page_config = {"lang": lang, "timezone": self.config.timezone, "poll_s": self.config.poll_s,
                       "tile_url": self.config.tile_url, "ranges": list(RANGES),
                       "flood_bands_cm": list(self.config.flood_bands_cm), "messages": MESSAGES[lang]}
        page_config.update(values.pop("page_config", {}))
        html = self.env.get_template(template).render(
            t=MESSAGES[lang], lang=lang, languages=LANGUAGES, csrf=csrf, path=here,
            config=self.config, page_config=json.dumps(page_config, ensure_ascii=False).replace("</", "<\\/"),
            overview_panels=OVERVIEW_PANELS, node_panels=NODE_PANELS, **values)
        response = HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": self.csp(), "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff"})
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=PREFIX,
                                secure=request.url.scheme == "https")
        return response

    def check_csrf(self, request: Request, token: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return (bool(cookie) and hmac.compare_digest(cookie.encode(), token.encode())
                and _same_origin_or_absent(request))

    def alert_flags(self, who: Principal) -> dict[str, bool]:
        """The page's alert switches: whether alerts are served, whether this user may acknowledge."""
        return {"alerts": self.ctx.alerts is not None, "can_ack": who.has_role("admin")}

    def principal(self, request: Request) -> Principal | None:
        if not request.cookies.get(SESSION_COOKIE):
            return None
        try:
            return authenticate(request, self.ctx)
        except Rejected:
            return None


def router(ctx: AppContext, config: ConsoleConfig) -> APIRouter:
    pages = Pages(ctx, config)
    api = APIRouter(include_in_schema=False)

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)

    @api.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=303)

    @api.get(PREFIX)
    def console_root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/", status_code=303)

    @api.get(PREFIX + "/login")
    def login_form(request: Request, next: str | None = None) -> HTMLResponse:
        return pages.render(request, "login.html", next=_safe_next(next), error=None)

    @api.post(PREFIX + "/login")
    async def login(request: Request) -> Response:
        form = await form_fields(request)
        user, password, csrf = form.get("user", ""), form.get("password", ""), form.get("csrf", "")
        target = _safe_next(form.get("next"))
        if not pages.check_csrf(request, csrf):
            return pages.render(request, "login.html", status=403, next=target, error="login_expired")
        session = await run_in_threadpool(ctx.accounts.login, user[:200], password)
        if session is None:
            return pages.render(request, "login.html", status=401, next=target, error="login_failed")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/",
                            max_age=(session.expires_ms - ctx.now_ms()) // 1000)
        response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), httponly=True, samesite="strict",
                            path=PREFIX, secure=request.url.scheme == "https")  # a new token per session
        return response

    @api.post(PREFIX + "/logout")
    async def logout(request: Request) -> Response:
        form = await form_fields(request)
        if not pages.check_csrf(request, form.get("csrf", "")):
            raise Rejected("forbidden", "csrf: the form's token does not match; reload the page")
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            await run_in_threadpool(ctx.accounts.logout, session_id)
        response = RedirectResponse(PREFIX + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @api.post(PREFIX + "/language")
    async def language(request: Request) -> Response:
        form = await form_fields(request)
        lang, next = form.get("lang", ""), form.get("next")
        if not pages.check_csrf(request, form.get("csrf", "")):
            raise Rejected("forbidden", "csrf: the form's token does not match; reload the page")
        if lang not in LANGUAGES:
            raise Rejected("bad_request", f"lang: expected one of {', '.join(LANGUAGES)}", field="lang")
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(LANG_COOKIE, lang, samesite="strict", path="/", max_age=365 * 86400,
                            secure=request.url.scheme == "https")
        return response

    @api.get(PREFIX + "/")
    def overview(request: Request) -> Response:
        who = pages.principal(request)
        if who is None:
            return to_login(request)
        return pages.render(request, "overview.html", user=who.name, alerts_on=ctx.alerts is not None,
                            page_config={"page": "overview", **pages.alert_flags(who)})

    @api.get(PREFIX + "/nodes/{node_id}")
    def node_page(request: Request, node_id: str, range: str = "24h") -> Response:
        who = pages.principal(request)
        if who is None:
            return to_login(request)
        if ctx.store.node_key(node_id) is None:
            raise Rejected("not_found", f"unknown node {node_id!r}")
        chosen = range if range in RANGES else "24h"
        return pages.render(request, "node.html", user=who.name, node_id=node_id, range=chosen,
                            alerts_on=ctx.alerts is not None,
                            page_config={"page": "node", "node": node_id, "range": chosen,
                                         **pages.alert_flags(who)})

    @api.post(PREFIX + "/alerts/{alert_id}/ack")
    async def acknowledge(request: Request, alert_id: int) -> Response:
        """An admin acknowledges an open alert from the node page (a form: csrf, next)."""
        from central.alerts.engine import AlertError

        form = await form_fields(request)
        if not pages.check_csrf(request, form.get("csrf", "")):
            raise Rejected("forbidden", "csrf: the form's token does not match; reload the page")
        if not request.cookies.get(SESSION_COOKIE):
            return to_login(request)
        who = await run_in_threadpool(authenticate, request, ctx)  # a change: Origin/Referer required
        if not who.has_role("admin"):
            raise Rejected("forbidden",
                           f"user {who.name!r} has role {who.role!r}; acknowledging needs 'admin'")
        if ctx.alerts is None:
            raise Rejected("unavailable", "alerts are not available with this store")
        try:
            await run_in_threadpool(ctx.alerts.acknowledge, alert_id, who.name, None)
        except AlertError as e:
            raise Rejected(e.code, str(e)) from None
        return RedirectResponse(_safe_next(form.get("next")), status_code=303)

    from central.alerts import rules_page  # the alert rules page (central/alerts/rules_page.py)

    api.include_router(rules_page.router(ctx, pages, form_fields))

    @api.get(PREFIX + "/static/{name}")
    def static(name: str) -> Response:
        body = pages.static.get(name)
        if body is None:
            raise Rejected("not_found", f"no static file {name!r}")
        media = next(kind for ext, kind in STATIC_TYPES.items() if name.endswith(ext))
        return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=3600",
                                                         "X-Content-Type-Options": "nosniff"})

    return api


