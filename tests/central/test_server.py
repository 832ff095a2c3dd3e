"""The real receiver on loopback: ingest, idempotency, every rejection, read API."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time

import pytest
import requests

from central.server import serve_in_thread
from central.store import open_store
from node import protocol
from tests.central.helpers import (
    KEY,
    NODE,
    body_of,
    get,
    ingest_counts,
    make_batch,
    now_ms,
    post,
    read_token,
)


@pytest.fixture
def central(store):
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store, max_body=256 * 1024, max_decompressed=1024 * 1024)
    yield url, store
    stop()


def test_ingest_then_resend_whole_and_resplit_is_idempotent(central):
    url, store = central
    b = make_batch(range(30))
    r = post(url, body_of(b))
    assert ingest_counts(r) == {"stored": 30, "duplicates": 0, "gaps": 0, "incidents": 0}
    j = r.json()  # contract 2: what the node checks (stored + duplicates == readings == len(batch))
    assert (j["readings"], j["batch"], j["epoch"]) == (30, b.id, b.epoch)
    assert abs(j["server_time_ms"] - now_ms()) < 10_000
    time.sleep(0.002)  # a new timestamp, hence a new signature
    r = post(url, body_of(b))
    assert r.status_code == 200 and r.json()["stored"] == 0 and r.json()["duplicates"] == 30
    for part in (range(0, 10), range(5, 45)):  # re-split with overlap and new readings
        r = post(url, body_of(make_batch(part)))
        assert r.status_code == 200, r.text
    assert ingest_counts(r) == {"stored": 15, "duplicates": 25, "gaps": 0, "incidents": 0}
    assert r.json()["readings"] == 40
    assert store.seqs(NODE, 1) == list(range(45))
    assert r.headers[protocol.HEADER_SERVER_TIME].isdigit()


def error_of(r: requests.Response) -> str:
    assert r.headers["content-type"].startswith("application/json")
    if r.status_code == 401:  # a node with a wrong clock can always learn the server's time
        assert r.headers["Date"] and r.headers[protocol.HEADER_SERVER_TIME].isdigit()
    return r.json()["error"]


def test_unknown_node(central):
    url, store = central
    r = post(url, body_of(make_batch(range(3), node="ghost")), node="ghost")
    assert (r.status_code, error_of(r)) == (401, "unknown_node")
    assert r.headers["date"]  # every 401 carries the server's Date
    assert store.count_readings() == 0


@pytest.mark.parametrize("case", ["missing", "wrong_key", "tampered_body", "wrong_path", "garbage_sig"])
def test_bad_or_missing_signature(central, case):
    url, store = central
    body = body_of(make_batch(range(3)))
    kw: dict = {}
    if case == "missing":
        kw["headers"] = {protocol.HEADER_SIGNATURE: None}
    elif case == "wrong_key":
        kw["key"] = bytes(32)
    elif case == "tampered_body":
        kw["sign_body"] = body_of(make_batch(range(4)))
    elif case == "wrong_path":
        kw["sign_path"] = "/v1/ping"
    else:
        kw["headers"] = {protocol.HEADER_SIGNATURE: "zz"}
    r = post(url, body, **kw)
    assert (r.status_code, error_of(r)) == (401, "bad_signature")
    assert r.headers["date"] and store.count_readings() == 0


def test_stale_timestamp_gives_server_time_and_resign_succeeds(central):
    url, store = central
    body = body_of(make_batch(range(3)))
    node_clock_offset = -3_600_000  # the node believes it is an hour earlier (no RTC yet)
    r = post(url, body, ts=now_ms() + node_clock_offset)
    assert (r.status_code, error_of(r)) == (401, "stale_timestamp")
    server_ms = protocol.server_time_ms(r.headers, r.json())
    assert abs(server_ms - now_ms()) < 5_000
    date_ms = protocol.server_time_ms({"Date": r.headers["Date"]})
    assert abs(date_ms - server_ms) < 2_000
    assert store.count_readings() == 0
    offset = server_ms - (now_ms() + node_clock_offset)  # what the uploader measures
    r = post(url, body, ts=now_ms() + node_clock_offset + offset)
    assert r.status_code == 200 and r.json()["stored"] == 3


def test_replay_rejected(central):
    url, store = central
    body, ts = body_of(make_batch(range(3))), now_ms()
    assert post(url, body, ts=ts).status_code == 200
    r = post(url, body, ts=ts)
    assert (r.status_code, error_of(r)) == (401, "replay")
    assert store.count_readings() == 3


@pytest.mark.parametrize(("headers", "code"), [
    ({"Content-Type": "text/plain"}, "bad_content_type"),
    ({"Content-Encoding": None}, "bad_content_type"),
    ({"Content-Encoding": "br"}, "bad_content_type"),
])
def test_wrong_content_type(central, headers, code):
    url, store = central
    r = post(url, body_of(make_batch(range(3))), headers=headers)
    assert (r.status_code, error_of(r)) == (415, code)
    assert store.count_readings() == 0


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"not gzip at all", 400, "bad_gzip"),
    (gzip.compress(b"{not json"), 400, "bad_json"),
    (gzip.compress(b"\xff\xfe\x00"), 400, "bad_json"),
    (gzip.compress(b'{"v": 1}'), 422, "schema"),
])
def test_malformed_bodies(central, raw, status, code):
    url, store = central
    r = post(url, raw)
    assert (r.status_code, error_of(r)) == (status, code)
    assert store.count_readings() == 0


def test_schema_violation_names_the_field(central):
    url, store = central
    doc = json.loads(gzip.decompress(body_of(make_batch(range(6)))))
    doc["channels"][1]["v"][0] = "warm"
    r = post(url, gzip.compress(json.dumps(doc).encode()))
    assert (r.status_code, error_of(r)) == (422, "schema")
    assert r.json()["field"] == "channels[1].v[0]"
    assert store.count_readings() == 0


def test_body_node_must_match_signer(central):
    url, store = central
    store.add_node("pole-2", KEY, now_ms())
    r = post(url, body_of(make_batch(range(3), node="pole-2")))
    assert (r.status_code, error_of(r), r.json()["field"]) == (422, "schema", "node")
    assert store.count_readings() == 0


def test_too_large_before_decompression(central):
    url, store = central
    import os

    raw = gzip.compress(os.urandom(300 * 1024))  # incompressible: > 256 KiB on the wire
    r = post(url, raw)
    assert (r.status_code, error_of(r)) == (413, "too_large")
    # without Content-Length (chunked) the cap holds while streaming
    h = dict(protocol.BODY_HEADERS)
    h.update(protocol.sign_request(KEY, "POST", "/v1/ingest", raw, now_ms(), node_id=NODE))
    r = requests.post(url + "/v1/ingest", data=iter([raw[i:i + 65536] for i in range(0, len(raw), 65536)]),
                      headers=h, timeout=30)
    assert (r.status_code, error_of(r)) == (413, "too_large")
    assert store.count_readings() == 0


def test_gzip_bomb_rejected_after_decompression(central):
    url, store = central
    bomb = gzip.compress(b'{"v":1,"node":"' + b"a" * (20 * 1024 * 1024) + b'"}')
    assert len(bomb) < 256 * 1024
    r = post(url, bomb)
    assert (r.status_code, error_of(r)) == (413, "too_large")
    assert store.count_readings() == 0


def test_ping(central):
    url, store = central
    r = post(url, b"", path=protocol.PING_PATH, headers={"Content-Type": None, "Content-Encoding": None},
             ts=now_ms() - 1000)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["node"] == NODE and j["protocol"] == 1 and j["status"]["readings"] == 0
    assert 500 <= j["clock_offset_ms"] < 10_000
    r2 = requests.post(url + protocol.PING_PATH, headers=r.request.headers, timeout=10)
    assert (r2.status_code, error_of(r2)) == (401, "replay")
    r3 = post(url, b"", path=protocol.PING_PATH, key=bytes(32))
    assert (r3.status_code, error_of(r3)) == (401, "bad_signature")


def test_read_api(central):
    url, store = central
    b = make_batch(range(9))
    doc = json.loads(gzip.decompress(body_of(b)))
    doc["gaps"] = [{"epoch": 1, "first_seq": 100, "last_seq": 109, "count": 10, "reason": "evicted_age"}]
    doc["incidents"] = [{"id": 1, "wall_ms": 5, "kind": "disk_full", "detail": "ENOSPC"}]
    r = post(url, gzip.compress(json.dumps(doc).encode()))
    assert ingest_counts(r) == {"stored": 9, "duplicates": 0, "gaps": 1, "incidents": 1}
    auth = read_token(store)
    nodes = get(url + "/v1/nodes", auth).json()["nodes"]
    (n,) = nodes
    assert (n["node_id"], n["backlog_readings"], n["gaps"], n["missing_readings"], n["incidents"]) == (
        NODE, 5, 1, 10, 1)
    assert n["last_seen_ms"] is not None
    ch = "weather.humidity_pct"
    j = get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"channel": ch}).json()
    assert [x["seq"] for x in j["readings"]] == [1, 4, 7] and j["readings"][0]["value"] == 20.01
    assert j["readings"][0]["unit"] == "%"
    j = get(f"{url}/v1/nodes/{NODE}/readings", auth,
            params={"since": "2025-11-25T19:46:50Z", "until": 1_764_100_020_000}).json()
    assert [x["seq"] for x in j["readings"]] == [3, 4, 5]
    r = get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"format": "csv", "channel": ch})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["seq"], x["value"], x["unit"]) for x in rows] == [("1", "20.01", "%"), ("4", "20.04", "%"),
                                                                ("7", "20.07", "%")]
    assert rows[0]["time_utc"] == "2025-11-25T19:46:40.000Z"
    for since in ("yesterday", "²", "1" * 16, "9999-99-99"):  # "²".isdigit() was a 500
        r = get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"since": since})
        assert (r.status_code, error_of(r), r.json()["field"]) == (400, "bad_query", "since"), since
    r = get(f"{url}/v1/nodes/ghost/readings", auth)
    assert (r.status_code, error_of(r)) == (404, "not_found")
    assert requests.get(url + "/healthz", timeout=10).json()["ok"] is True
    assert "/v1/ingest" in get(url + "/openapi.json", auth).json()["paths"]


def test_serve_in_thread_from_url_and_restart_keeps_data(tmp_path):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    s = open_store(db)
    s.add_node(NODE, KEY, now_ms())
    s.close()
    url, stop = serve_in_thread(db)
    assert post(url, body_of(make_batch(range(4)))).json()["stored"] == 4
    stop()
    url, stop = serve_in_thread(db)
    try:
        assert ingest_counts(post(url, body_of(make_batch(range(6))))) == {
            "stored": 2, "duplicates": 4, "gaps": 0, "incidents": 0}
    finally:
        stop()


def test_store_down_is_503_not_500(tmp_path):
    from central.store_pg import PgStore

    store = PgStore("postgresql://postgres@127.0.0.1:1/none")  # nothing listens there
    url, stop = serve_in_thread(store)
    try:
        r = requests.get(url + "/healthz", timeout=30)
        assert (r.status_code, error_of(r)) == (503, "unavailable")
        r = post(url, body_of(make_batch(range(3))))
        assert (r.status_code, error_of(r)) == (503, "unavailable")
    finally:
        stop()


@pytest.mark.postgres
def test_postgres_connection_lost_then_recovers(pg_url):
    import psycopg

    store = open_store(pg_url)
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store)
    try:
        assert post(url, body_of(make_batch(range(3)))).status_code == 200
        pid = store._conn.info.backend_pid  # the server ends our session, as a restart would
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        r = post(url, body_of(make_batch(range(6))))
        assert r.status_code in (200, 503), r.text  # never a 500
        r = post(url, body_of(make_batch(range(6))))
        assert r.status_code == 200 and store.seqs(NODE, 1) == list(range(6))
    finally:
        stop()
        store.close()


@pytest.mark.postgres
def test_postgres_connection_left_mid_command_is_replaced(pg_url):
    """What an ended session can leave behind (seen in CI after pg_terminate_backend): libpq busy
    with a command nobody reads, the connection not flagged broken. Here the state is made on purpose
    (a query sent through libpq and never read): one batch gets a 503, the next one a new connection."""
    store = open_store(pg_url)
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store)
    try:
        assert post(url, body_of(make_batch(range(3)))).status_code == 200
        store._conn.pgconn.send_query(b"SELECT 1")
        assert not store._conn.broken
        r = post(url, body_of(make_batch(range(6))))
        assert r.status_code == 503, r.text  # never a 500
        r = post(url, body_of(make_batch(range(6))))
        assert r.status_code == 200, r.text
        assert store.seqs(NODE, 1) == list(range(6))
    finally:
        stop()
        store.close()


def test_tls(tmp_path):
    import shutil

    from tests.central.helpers import make_tls_cert

    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    cert, key = make_tls_cert(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store, tls_cert=cert, tls_key=key)
    try:
        assert url.startswith("https://127.0.0.1:")
        body = body_of(make_batch(range(5)))
        h = {**protocol.BODY_HEADERS, **protocol.sign_request(KEY, "POST", "/v1/ingest", body, now_ms(),
                                                                node_id=NODE)}
        r = requests.post(url + "/v1/ingest", data=body, headers=h, timeout=30, verify=cert)
        assert r.json()["stored"] == 5
        with pytest.raises(requests.exceptions.SSLError):  # the node always verifies
            requests.get(url + "/healthz", timeout=30)
    finally:
        stop()
        store.close()
