"""Errors of the SensorThings API, each with its HTTP status.

Bodies carry both our JSON error shape (``error``, ``message``, ``field``) and the
``code``/``type`` keys FROST-Server sends, so STA clients and our own tools read them alike.
"""

from __future__ import annotations

from typing import Any


class StaError(Exception):
    status = 400
    code = "bad_query"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            doc["field"] = self.field
        doc["code"] = self.status
        doc["type"] = "error"
        return doc


class BadQuery(StaError, ValueError):
    """A query option or path that cannot be understood (400)."""


class NotFound(StaError, LookupError):
    status = 404
    code = "not_found"


class TooExpensive(StaError):
    """The request would exceed a bound (entities per response, time per request)."""

    status = 400
    code = "too_expensive"


class Unavailable(StaError):
    status = 503
    code = "unavailable"
