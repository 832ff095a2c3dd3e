"""The receiver's one error shape: ``{"error": code, "message": ..., "field"?: ..., ...}``.

Every router raises `Rejected(code, message, **extra)`; the status comes from `STATUS` (codes not
listed are 400). Area routers add their codes to `STATUS` only through `register_status`.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

STATUS: dict[str, int] = {
    # ingest and ping (node HMAC)
    "unknown_node": 401, "bad_signature": 401, "stale_timestamp": 401, "replay": 401,
    "bad_content_type": 415, "too_large": 413, "bad_gzip": 400, "bad_json": 400, "schema": 422,
    # reads and accounts
    "bad_query": 400, "bad_request": 400, "too_expensive": 400, "unauthorized": 401, "forbidden": 403,
    "not_found": 404, "method_not_allowed": 405,
    # the server protecting itself (central/http.py, docs/protocol.md "Limits")
    "timeout": 408, "quota": 429, "overloaded": 503,
    # the server
    "internal": 500, "unavailable": 503,
}


class Rejected(Exception):
    """A request refused with the JSON error shape; stores nothing."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)


def register_status(code: str, status: int) -> None:
    """Give an area's own error code its HTTP status (refuses to change an existing one)."""
    if STATUS.get(code, status) != status:
        raise ValueError(f"error code {code!r} already means HTTP {STATUS[code]}")
    STATUS[code] = status


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def error_response(code: str, message: str, *, status: int | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The JSON error; ``retry_after_s`` in ``extra`` is also sent as ``Retry-After``."""
    status = STATUS.get(code, 400) if status is None else status
    all_headers = dict(headers or {})
    if type(extra.get("retry_after_s")) is int:
        all_headers.setdefault("Retry-After", str(extra["retry_after_s"]))
    if code in ("unknown_node", "bad_signature", "stale_timestamp", "replay"):
        all_headers.setdefault("WWW-Authenticate", "Streetnode-HMAC-SHA256")
    elif status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="streetnode-central"')
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=all_headers)
