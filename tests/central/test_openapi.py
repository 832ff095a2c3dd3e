"""/openapi.json documents every answer (#13, old #11, item 6): each operation has a success
response with a schema and answers errors in the JSON error shape (FastAPI's own 422 shape is not
what the receiver sends); the answers of the node and read endpoints match their schemas."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from central.server import serve_in_thread
from tests.central.helpers import KEY, NODE, body_of, get, make_batch, now_ms, post, read_token


@pytest.fixture
def central(store):
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store)
    auth = read_token(store)
    yield url, store, auth, get(url + "/openapi.json", auth).json()
    stop()


def resolve(doc: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def conforms(doc: dict, schema: dict, value, where: str = "$") -> None:
    """The subset of JSON Schema the shapes use: type, required, properties, items, enum, const, oneOf."""
    schema = resolve(doc, schema)
    if "oneOf" in schema:
        problems = []
        for option in schema["oneOf"]:
            try:
                conforms(doc, option, value, where)
                return
            except AssertionError as e:
                problems.append(str(e))
        raise AssertionError(f"{where}: no option fits: {problems}")
    types = schema.get("type")
    if types is not None:
        kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
                 "integer": int, "number": (int, float)}
        allowed = [types] if isinstance(types, str) else types
        ok = any(isinstance(value, kinds[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in allowed)
        assert ok, f"{where}: {value!r} is not {types}"
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], where
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                conforms(doc, sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            conforms(doc, schema["items"], item, f"{where}[{i}]")


def test_every_operation_documents_success_and_the_error_shape(central):
    _, _, _, doc = central
    assert "HTTPValidationError" not in json.dumps(doc)
    ingest = doc["paths"]["/v1/ingest"]["post"]
    error = ingest["responses"]["default"]["content"]["application/json"]["schema"]
    assert error["required"] == ["error", "message"]
    count = 0
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            count += 1
            success = [r for status, r in op["responses"].items() if str(status).startswith("2")]
            assert success, f"{method} {path}: no 2xx documented"
            for response in success:
                schemas = [c.get("schema") for c in response.get("content", {}).values()]
                assert schemas and all(schemas), f"{method} {path}: a 2xx without a schema"
                assert any(s.get("type") or s.get("$ref") for s in schemas), f"{method} {path}: empty schema"
            for status, response in op["responses"].items():
                if str(status)[0] in "45" or status == "default":
                    got = response["content"]["application/json"]["schema"]
                    assert got == error, f"{method} {path} {status}: not the JSON error shape"
            assert "default" in op["responses"], f"{method} {path}"
    assert count >= 10


def test_answers_match_their_documented_schemas(central):
    url, store, auth, doc = central

    def check(method: str, path: str, r: requests.Response) -> None:
        content = doc["paths"][path][method]["responses"]
        response = content.get(str(r.status_code)) or content["default"]
        conforms(doc, response["content"]["application/json"]["schema"], r.json(), f"{method} {path}")

    batch = make_batch(range(9))
    raw = json.loads(gzip.decompress(body_of(batch)))
    raw["gaps"] = [{"epoch": 1, "first_seq": 100, "last_seq": 101, "count": 2, "reason": "evicted_age"}]
    check("post", "/v1/ingest", post(url, gzip.compress(json.dumps(raw).encode())))
    check("post", "/v1/ingest", post(url, b"not gzip"))
    check("post", "/v1/ping", post(url, b"", path="/v1/ping"))
    check("get", "/v1/nodes", get(url + "/v1/nodes", auth))
    check("get", "/v1/nodes", get(url + "/v1/nodes", auth, params={"limit": 0}))
    readings = "/v1/nodes/{node_id}/readings"
    check("get", readings, get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"limit": 4}))
    check("get", readings, get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"cursor": "x"}))
    check("get", readings, get(f"{url}/v1/nodes/ghost/readings", auth))
    check("get", "/healthz", requests.get(url + "/healthz", timeout=10))
    check("get", "/v1/session", get(url + "/v1/session", auth))
    check("get", "/v1/session", requests.get(url + "/v1/session", timeout=10))
