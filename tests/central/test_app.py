"""The app's edges: one JSON error shape for every error (500 included, logged, no internals),
no page that loads from a CDN, and no drivers/ in the central."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time

import pytest
import requests

from central.server import serve_in_thread
from node import protocol
from tests.central.helpers import KEY, NODE, body_of, get, make_batch, now_ms, post, read_token
from tests.conftest import ROOT


class BrokenStore:
    """A store whose every call fails in a way nobody planned for (a bug, not an outage)."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        if name in ("node_key", "transaction"):
            return getattr(self._store, name)

        def fail(*args, **kwargs):
            raise ZeroDivisionError("secret table internals: SELECT * FROM nodes")

        return fail


@pytest.fixture
def central(store):
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store)
    yield url, store
    stop()


def test_unexpected_error_is_a_logged_json_500_without_internals(store, caplog):
    store.add_node(NODE, KEY, now_ms())
    auth = read_token(store)
    url, stop = serve_in_thread(BrokenStore(store))
    try:
        with caplog.at_level(logging.ERROR, logger="streetnode.central"):
            for r in (post(url, body_of(make_batch(range(3)))), get(url + "/v1/nodes", auth)):
                assert r.status_code == 500 and r.headers["content-type"] == "application/json"
                j = r.json()
                assert j["error"] == "internal" and "SELECT" not in r.text and "Traceback" not in r.text
                assert j["incident"] in caplog.text  # the log line an operator can find
    finally:
        stop()
    lines = [rec.getMessage() for rec in caplog.records if "500 internal" in rec.getMessage()]
    assert len(lines) == 2 and all("ZeroDivisionError" in line and "\n" not in line for line in lines)


def test_client_gone_mid_body_is_not_an_error(central, caplog):
    """A node whose link drops mid-upload is the street's normal weather: nobody is left to answer,
    so no 500 and no ERROR line per lost connection (an attacker could fill the journal with them)."""
    url, _store = central
    host, port = url.removeprefix("http://").split(":")
    body = body_of(make_batch(range(300)))
    headers = {**protocol.BODY_HEADERS, **protocol.sign_request(KEY, "POST", protocol.INGEST_PATH, body,
                                                                 now_ms(), node_id=NODE)}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None)
    with caplog.at_level(logging.DEBUG, logger="streetnode.central"):
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(f"POST {protocol.INGEST_PATH} HTTP/1.1\r\nHost: x\r\n{head}"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
                time.sleep(0.2)  # the server is reading the body when the link drops
            # the server still answers the next client at once
            assert requests.get(url + "/healthz", timeout=10).status_code == 200
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert errors == [], errors
    assert sum("client gone" in rec.getMessage() for rec in caplog.records) >= 1, caplog.text


def test_store_outage_is_503_with_retry_after_and_logged(tmp_path, caplog):
    from central.store_pg import PgStore

    url, stop = serve_in_thread(PgStore("postgresql://postgres@127.0.0.1:1/none"))
    try:
        with caplog.at_level(logging.WARNING, logger="streetnode.central"):
            r = requests.get(url + "/healthz", timeout=30)
    finally:
        stop()
    assert (r.status_code, r.json()["error"]) == (503, "unavailable")
    assert r.headers["retry-after"].isdigit() and "127.0.0.1:1" not in r.text  # no connection details
    assert "503 unavailable GET /healthz" in caplog.text


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/nope", 404, "not_found"),
    ("GET", "/v1/ingest", 405, "method_not_allowed"),
    ("GET", "/docs", 404, "not_found"),
    ("GET", "/redoc", 404, "not_found"),
    ("GET", "/docs/oauth2-redirect", 404, "not_found"),
    ("POST", "/v1/session", 400, "bad_request"),
])
def test_every_error_is_the_json_shape(central, method, path, status, code):
    url, _ = central
    r = requests.request(method, url + path, timeout=10)
    assert (r.status_code, r.headers["content-type"]) == (status, "application/json")
    assert r.json()["error"] == code and r.json()["message"]


def test_only_healthz_is_open(central):
    url, store = central
    assert requests.get(url + "/healthz", timeout=10).json()["ok"] is True
    for path in ("/v1/nodes", f"/v1/nodes/{NODE}/readings", "/v1/schema", "/openapi.json", "/v1/session"):
        r = requests.get(url + path, timeout=10)
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), path
        assert r.headers["www-authenticate"].startswith("Bearer")
    auth = read_token(store)
    for path in ("/v1/nodes", f"/v1/nodes/{NODE}/readings", "/v1/schema", "/openapi.json", "/v1/session"):
        assert get(url + path, auth).status_code == 200, path


def test_openapi_has_no_cdn_page(central):
    url, store = central
    doc = get(url + "/openapi.json", read_token(store)).text
    assert "cdn." not in doc and "unpkg" not in doc and "jsdelivr" not in doc


def test_importing_the_app_imports_no_driver():
    code = ("import sys, central.app, central.server, central.cli; "
            "print(sorted(m for m in sys.modules if m == 'drivers' or m.startswith('drivers.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
