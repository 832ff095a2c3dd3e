"""The receiver's response shapes as OpenAPI ``responses`` (served in ``/openapi.json``).

docs/protocol.md says the same in prose; tests/central/test_openapi.py checks that every path
documents its answers and that real answers match these schemas.
"""

from __future__ import annotations

from typing import Any

ERROR = {"type": "object", "required": ["error", "message"], "properties": {
    "error": {"type": "string", "description": "a code of docs/protocol.md, e.g. schema, bad_query"},
    "message": {"type": "string", "description": "one line for a person"},
    "field": {"type": "string", "description": "the offending field, header or parameter"},
    "limit": {"type": "integer", "description": "the bound that was exceeded (too_large...)"},
    "server_time_ms": {"type": "integer", "description": "stale_timestamp: the central's clock"},
    "window_ms": {"type": "integer", "description": "stale_timestamp: the accepted skew"},
    "incident": {"type": "string", "description": "internal: the id of the logged error"},
}, "additionalProperties": True}

_INT = {"type": "integer"}
_INT_OR_NULL = {"type": ["integer", "null"]}

INGEST_RESULT = {"type": "object", "required": ["stored", "duplicates", "conflicts", "conflict_seqs", "gaps",
                                                 "incidents", "high_seq", "max_epoch", "readings", "batch",
                                                 "epoch", "server_time_ms"], "properties": {
    "stored": {"type": "integer", "description": "readings new to the central"},
    "duplicates": {"type": "integer", "description": "readings it had already, the same sample (stored + "
                   "duplicates + conflicts = readings)"},
    "conflicts": {"type": "integer", "description": "readings whose (epoch, seq) it holds with other content:"
                  " not stored, recorded"},
    "conflict_seqs": {"type": "array", "items": _INT, "maxItems": 1000,
                      "description": "the conflicting seqs, ascending, at most 1,000"},
    "gaps": {"type": "integer", "description": "gaps stored or extended"},
    "incidents": {"type": "integer", "description": "incidents new to the central"},
    "high_seq": {"type": ["integer", "null"], "description": "the highest seq stored of (node, epoch) after "
                 "this batch (null: none)"},
    "max_epoch": {"type": ["integer", "null"], "description": "the node's highest non-volatile epoch the "
                  "central has seen (null: none)"},
    "readings": {"type": "integer", "description": "readings decoded from the batch"},
    "batch": {"type": ["integer", "null"], "description": "the document's batch id, echoed"},
    "epoch": _INT, "server_time_ms": _INT}}

NODE = {"type": "object", "required": ["node_id", "created_ms", "last_seen_ms", "health", "readings", "gaps",
                                        "missing_readings", "incidents", "conflicts", "identities"],
        "properties": {
    "node_id": {"type": "string"}, "created_ms": _INT,
    "last_seen_ms": {"type": ["integer", "null"], "description": "last accepted batch (null: never)"},
    "backlog_readings": {"type": ["integer", "null"], "description": "from health"},
    "oldest_reading_age_s": {"type": ["number", "null"], "description": "from health"},
    "firmware": {"type": ["string", "null"], "description": "from health"},
    "health": {"type": ["object", "null"], "description": "the last non-empty health the node sent"},
    "readings": {"type": "integer", "description": "readings stored"},
    "gaps": {"type": "integer", "description": "gaps reported"},
    "missing_readings": {"type": "integer", "description": "sum of the gaps' counts"},
    "incidents": _INT,
    "conflicts": {"type": "integer", "description": "readings refused: their (epoch, seq) was stored with "
                  "other content (docs/central.md)"},
    "identities": {"type": "integer", "description": "distinct (hw_serial, machine_id, buffer_id) seen"}}}

PING_RESULT = {"type": "object", "required": ["ok", "protocol", "node", "server_time_ms", "clock_offset_ms",
                                               "status"], "properties": {
    "ok": {"const": True}, "protocol": _INT, "node": {"type": "string"}, "server_time_ms": _INT,
    "clock_offset_ms": {"type": "integer", "description": "server time minus the request's timestamp"},
    "status": {"oneOf": [NODE, {"type": "null"}]}}}

READING = {"type": "object", "required": ["node_id", "epoch", "seq", "channel", "unit", "value", "flags",
                                           "wall_ms", "boot_ms", "boot_id", "received_ms"], "properties": {
    "node_id": {"type": "string"}, "epoch": _INT, "seq": _INT, "channel": {"type": "string"},
    "unit": {"type": "string", "description": "the unit the reading was sent with"},
    "value": {"type": ["number", "null"], "description": "null: no value (see flags)"},
    "flags": {"type": "integer", "description": "quality bits (docs/protocol.md)"},
    "wall_ms": _INT, "boot_ms": _INT, "boot_id": {"type": "string"}, "received_ms": _INT}}

NODES_PAGE = {"type": "object", "required": ["nodes", "next"], "properties": {
    "nodes": {"type": "array", "items": NODE},
    "next": {"type": ["string", "null"], "description": "pass as after= for the next page; null: last"}}}

READINGS_PAGE = {"type": "object", "required": ["node", "count", "readings", "next"], "properties": {
    "node": {"type": "string"}, "count": _INT, "readings": {"type": "array", "items": READING},
    "next": {"type": ["string", "null"], "description": "pass as cursor= for the next page; null: last"}}}

HEALTHZ = {"type": "object", "required": ["ok", "protocol", "server_time_ms"], "properties": {
    "ok": {"const": True}, "protocol": _INT, "server_time_ms": _INT}}


def _json(description: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **more}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error answers (the JSON error shape) for ``statuses``."""
    shaped: dict[int | str, dict[str, Any]] = {
        status: _json("error (the JSON error shape, docs/protocol.md)", ERROR) for status in statuses}
    shaped["default"] = _json("any other error: the same JSON error shape", ERROR)
    return shaped


_NODE_AUTH = (400, 401, 413, 415, 422, 500, 503)
_READ_AUTH = (400, 401, 403, 404, 500, 503)

INGEST_DOC = {200: _json("stored (readings already stored count as duplicates)", INGEST_RESULT),
              **errors(*_NODE_AUTH)}
PING_DOC = {200: _json("server time and what the central knows of the node", PING_RESULT),
            **errors(*_NODE_AUTH)}
NODES_DOC = {200: _json("a page of nodes by id", NODES_PAGE), **errors(*_READ_AUTH)}
READINGS_DOC = {200: {"description": "a page of readings in (wall_ms, epoch, seq) order; the next page's "
                      "cursor also in the X-Streetnode-Next header",
                      "content": {"application/json": {"schema": READINGS_PAGE},
                                  "text/csv": {"schema": {"type": "string", "description":
                                               "columns as in docs/protocol.md, a header row first"}}}},
                **errors(*_READ_AUTH)}
SCHEMA_DOC = {200: {"description": "the JSON Schema of the ingest document",
                    "content": {"application/schema+json": {"schema": {"type": "object"}}}},
              **errors(401, 403, 500, 503)}
OPENAPI_DOC = {200: _json("this document", {"type": "object"}), **errors(401, 403, 500, 503)}
HEALTHZ_DOC = {200: _json("alive; the store answers", HEALTHZ), **errors(500, 503)}

SESSION = {"type": "object", "required": ["user", "role", "expires_ms"], "properties": {
    "user": {"type": "string"}, "role": {"enum": ["read", "admin"]}, "expires_ms": _INT}}
WHOAMI = {"type": "object", "required": ["name", "role", "kind"], "properties": {
    "name": {"type": "string"}, "role": {"enum": ["read", "admin"]}, "kind": {"enum": ["token", "session"]}}}
LOGIN_DOC = {200: _json("logged in; the session cookie is set", SESSION), **errors(400, 401, 500, 503)}
WHOAMI_DOC = {200: _json("who the request is authenticated as", WHOAMI), **errors(401, 403, 500, 503)}
LOGOUT_DOC = {200: _json("logged out; the cookie is cleared", {"type": "object", "required": ["ok"],
                                                                 "properties": {"ok": {"const": True}}}),
              **errors(403, 500, 503)}
STA_DOC = {200: _json("an OGC SensorThings API v1.1 entity, or a collection {value, @iot.nextLink} "
                      "(docs/sta.md)", {"type": "object"}), **errors(400, 401, 403, 404, 500, 503)}


def object_doc(description: str, *keys: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is a JSON object with these top-level keys (an area's own page documents them)."""
    return {200: _json(description, {"type": "object", "required": list(keys)}),
            **errors(400, 401, 403, 404, 500, 503)}


def shape_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Every operation of an OpenAPI document answers errors in the JSON error shape: FastAPI's
    generated ``422 HTTPValidationError`` (the receiver answers those with ``400 bad_query``) becomes
    a 400 error, and an operation without ``default`` gets it. FastAPI's empty JSON placeholder is
    dropped from a success that documents another media type (``/v1/schema``)."""
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            generated = responses.get("422", {}).get("content", {}).get("application/json", {})
            if "HTTPValidationError" in str(generated.get("schema", "")):
                del responses["422"]
                responses.setdefault("400", _json("error (the JSON error shape, docs/protocol.md)", ERROR))
            responses.setdefault("default", _json("any other error: the same JSON error shape", ERROR))
            for status, response in responses.items():  # FastAPI's placeholder beside a documented type
                content = response.get("content", {})
                if str(status).startswith("2") and len(content) > 1 and content.get(
                        "application/json", {}).get("schema") == {}:
                    del content["application/json"]
    schemas = doc.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)  # no operation refers to them any more
    schemas.pop("ValidationError", None)
    return doc
