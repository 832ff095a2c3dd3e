"""Who may read: FastAPI dependencies over central/accounts.py.

``Depends(require_role("read"))`` (or ``"admin"``) accepts either an API token
(``Authorization: Bearer snt_...``) or a console session cookie (`SESSION_COOKIE`, set by
``POST /v1/session``). The node endpoints (HMAC) and ``/healthz`` do not use it.

A request authenticated by the cookie with an unsafe method (POST, PUT, PATCH, DELETE) must come
from the central's own origin (``Origin`` or ``Referer``), so another site cannot make a logged-in
browser act (with ``SameSite=Strict`` on the cookie as a second layer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from central.accounts import ROLES, Principal
from central.api_shapes import LOGIN_DOC, LOGOUT_DOC, WHOAMI_DOC
from central.context import AppContext, app_context
from central.errors import Rejected

SESSION_COOKIE = "streetnode_session"
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Rejected("unauthorized", "Authorization: expected 'Bearer <token>'", field="Authorization")
    return value.strip()


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return parts.netloc == request.headers.get("host") and parts.scheme in ("http", "https")


def authenticate(request: Request, ctx: AppContext) -> Principal:
    """The request's principal (token first, then session cookie); raises 401 `Rejected`."""
    token = _bearer(request)
    if token is not None:
        principal = ctx.accounts.token_principal(token)
        if principal is None:
            raise Rejected("unauthorized", "unknown or revoked API token")
        return principal
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        principal = ctx.accounts.session_principal(session_id)
        if principal is None:
            raise Rejected("unauthorized", "session expired or logged out; log in again")
        if request.method not in _SAFE_METHODS and not _same_origin(request):
            raise Rejected("forbidden", "a cookie-authenticated change must come from the central's "
                           "own pages (Origin/Referer)")
        return principal
    raise Rejected("unauthorized", "authentication required: 'Authorization: Bearer <API token>' "
                   "(streetnode-central token add) or a console session")


def require_role(role: str) -> Callable[..., Any]:
    """A FastAPI dependency giving the request's `Principal` if it has ``role`` (admin ⊇ read)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {ROLES}")

    async def dependency(request: Request, ctx: Annotated[AppContext, Depends(app_context)]) -> Principal:
        principal = await run_in_threadpool(authenticate, request, ctx)
        if not principal.has_role(role):
            raise Rejected("forbidden", f"{principal.kind} {principal.name!r} has role "
                           f"{principal.role!r}; this needs {role!r}")
        request.state.principal = principal
        return principal

    return dependency


_reader = require_role("read")  # module level: annotations are resolved in the module's namespace


class LoginRequest(BaseModel):
    user: str
    password: str


def router(ctx: AppContext) -> APIRouter:
    """``/v1/session``: log in (sets the cookie), who am I, log out."""
    api = APIRouter(tags=["session"])

    @api.post("/v1/session", responses=LOGIN_DOC)
    async def login(request: Request, body: LoginRequest) -> JSONResponse:
        """Log in with a user's password; sets the session cookie (HttpOnly, SameSite=Strict)."""
        session = await run_in_threadpool(ctx.accounts.login, body.user, body.password)
        if session is None:
            raise Rejected("unauthorized", "wrong user name or password")
        response = JSONResponse({"user": session.principal.name, "role": session.principal.role,
                                 "expires_ms": session.expires_ms})
        response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/",
                            max_age=(session.expires_ms - ctx.now_ms()) // 1000)
        return response

    @api.get("/v1/session", responses=WHOAMI_DOC)
    def whoami(principal: Annotated[Principal, Depends(_reader)]) -> dict[str, str]:
        """The authenticated user or token and its role."""
        return {"name": principal.name, "role": principal.role, "kind": principal.kind}

    @api.delete("/v1/session", responses=LOGOUT_DOC)
    async def logout(request: Request) -> JSONResponse:
        """End the session of the cookie (if any) and clear the cookie."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            if not _same_origin(request):
                raise Rejected("forbidden", "log out from the central's own pages (Origin/Referer)")
            await run_in_threadpool(ctx.accounts.logout, session_id)
        response = JSONResponse({"ok": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return api
