"""Bounds enforced before work (central/http.py, central/ingest.py; docs/protocol.md "Limits").

Each test runs the real receiver in a thread with small limits and talks to it over raw sockets
where a well-behaved HTTP client could not misbehave enough.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import socket
import threading
import time

import pytest

from central.limits import IngestLimits, describe_limits, parse_limits
from central.server import serve_in_thread
from central.store import open_store
from node import protocol
from node.errors import ConfigError
from node.model import Batch, Gap, Incident, Reading
from tests.central.helpers import KEY, NODE, body_of, make_batch, now_ms, post

SMALL = IngestLimits(max_body=256 * 1024, max_decompressed=1024 * 1024, max_readings=500, max_gaps=5,
                     max_incidents=5, max_connections=6, max_requests=8, head_timeout_s=1.0,
                     body_timeout_s=1.5, keep_alive_s=30.0, body_budget=400 * 1024, retry_after_s=2)


def start(store, limits: IngestLimits = SMALL):
    store.add_node(NODE, KEY, now_ms())
    return serve_in_thread(store, limits=limits)


def hold_ingest(store, node: str | None = None) -> tuple[threading.Event, threading.Event]:
    """Make ``store.ingest`` of ``node``'s batches (every batch: None) wait, holding its ingest
    slot, until ``release`` is set; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    real_ingest = store.ingest

    def slow_ingest(batch, *args, **kwargs):
        if node is None or batch.node_id == node:
            entered.set()
            release.wait(10)
        return real_ingest(batch, *args, **kwargs)

    store.ingest = slow_ingest
    return entered, release


@pytest.fixture
def central(store):
    url, stop = start(store)
    yield url
    stop()


def address(url: str) -> tuple[str, int]:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def connect(url: str) -> socket.socket:
    sock = socket.create_connection(address(url), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(node: str = NODE, *, ts: int | None = None, length: int, body_for_sig: bytes = b"x",
         path: str = protocol.INGEST_PATH) -> bytes:
    ts = now_ms() if ts is None else ts
    signed = protocol.sign_request(KEY, "POST", path, body_for_sig, ts, node_id=node)
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Type: {protocol.CONTENT_TYPE}",
             "Content-Encoding: gzip", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in signed.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one response; status 0 when the server closed without one."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return 0, {}, data
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def valid_upload_ok(url: str, seqs=range(3)) -> bool:
    return post(url, body_of(make_batch(seqs))).status_code == 200


# ---------------------------------------------------------------- checks from the headers alone
def test_unknown_node_refused_before_the_body_is_read(central):
    sock = connect(central)
    sock.sendall(head("nobody", length=200_000))  # no body follows
    started = time.monotonic()
    status, headers, body = read_response(sock, timeout=5)
    assert status == 401 and json.loads(body)["error"] == "unknown_node"
    assert time.monotonic() - started < 1.0  # did not wait for the body or its deadline
    assert headers["connection"] == "close"  # the unread body is not taken for a request


def test_bad_node_id_header_refused_before_the_body(central):
    sock = connect(central)
    request = head(length=100).replace(f"X-Streetnode-Node: {NODE}".encode(), b"X-Streetnode-Node: evil node")
    sock.sendall(request)
    status, _, body = read_response(sock, timeout=5)
    assert status == 401 and json.loads(body)["field"] == protocol.HEADER_NODE


def test_stale_timestamp_refused_before_the_body_with_a_receipt(central):
    ts = now_ms() - 3_600_000
    sock = connect(central)
    sock.sendall(head(ts=ts, length=100_000))
    status, headers, body = read_response(sock, timeout=5)
    doc = json.loads(body)
    assert status == 401 and doc["error"] == "stale_timestamp"
    assert abs(doc["server_time_ms"] - now_ms()) < 10_000
    signature = protocol.sign_request(KEY, "POST", protocol.INGEST_PATH, b"x", ts, node_id=NODE)
    assert protocol.verify_receipt(KEY, signature[protocol.HEADER_SIGNATURE], body,
                                   headers[protocol.HEADER_RECEIPT.lower()])


# ---------------------------------------------------------------- body and batch limits
def test_declared_body_over_the_cap_is_413_naming_the_limit(central):
    sock = connect(central)
    sock.sendall(head(length=SMALL.max_body + 1))
    status, _, body = read_response(sock, timeout=5)
    assert status == 413 and json.loads(body)["limit"] == SMALL.max_body


def test_gzip_bomb_refused_while_it_streams(central):
    """A chunked body inflating past max_decompressed is refused before its end is sent."""
    bomb = gzip.compress(b"0" * (4 * SMALL.max_decompressed), compresslevel=9)
    half = bomb[: len(bomb) // 2]  # inflates past the cap already; the rest is never sent
    sock = connect(central)
    lines = head(length=0).decode().replace("Content-Length: 0", "Transfer-Encoding: chunked")
    sock.sendall(lines.encode() + f"{len(half):x}\r\n".encode() + half + b"\r\n")
    status, _, body = read_response(sock, timeout=5)
    assert status == 413 and json.loads(body)["limit"] == SMALL.max_decompressed


def _batch_with(n_readings: int, gaps: int = 0, incidents: int = 0) -> Batch:
    readings = [Reading(s, "weather.temperature_c", 20.0, 0, 1_764_100_000_000 + s * 1000, 5_000 + s * 1000,
                        "boot-a") for s in range(n_readings)]
    gap_list = [Gap(1, 10_000 + 10 * i, 10_000 + 10 * i, 1, None, None, "overflow") for i in range(gaps)]
    incident_list = [Incident(i, now_ms(), "k", "d") for i in range(incidents)]
    return Batch(3, NODE, 1, readings, gaps=gap_list, incidents=incident_list)


@pytest.mark.parametrize(("readings", "gaps", "incidents", "field", "limit"), [
    (SMALL.max_readings + 1, 0, 0, "readings", SMALL.max_readings),
    (10, SMALL.max_gaps + 1, 0, "gaps", SMALL.max_gaps),
    (10, 0, SMALL.max_incidents + 1, "incidents", SMALL.max_incidents),
])
def test_per_batch_limits_are_413_naming_field_and_limit(central, readings, gaps, incidents, field, limit):
    r = post(central, body_of(_batch_with(readings, gaps, incidents)))
    assert r.status_code == 413, r.text
    assert (r.json()["field"], r.json()["limit"]) == (field, limit)
    assert protocol.HEADER_RECEIPT in r.headers  # signed: the node splits and trusts the answer
    assert post(central, body_of(_batch_with(SMALL.max_readings))).status_code == 200


def test_long_string_is_422_naming_the_field(central):
    batch = make_batch(range(3))
    incident = dataclasses.replace(batch, incidents=[Incident(1, now_ms(), "k", "d" * 5000)])
    r = post(central, body_of(incident))
    assert r.status_code == 422 and r.json()["field"] == "incidents[0].detail"


# ---------------------------------------------------------------- slow and stalled clients
def test_slow_headers_are_closed_at_the_head_deadline(central):
    sock = connect(central)
    sock.sendall(b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\n")  # ... and never the rest
    assert closed_by_server(sock, within=SMALL.head_timeout_s + 2)
    idle = connect(central)  # a connection that sends nothing at all
    assert closed_by_server(idle, within=SMALL.head_timeout_s + 2)


def test_kept_alive_connection_that_starts_a_head_and_stalls_is_closed(central):
    sock = connect(central)
    body = body_of(make_batch(range(3)))
    signed = protocol.sign_request(KEY, "POST", protocol.INGEST_PATH, body, now_ms(), node_id=NODE)
    request = (f"POST {protocol.INGEST_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: {protocol.CONTENT_TYPE}\r\n"
               f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n").encode() + body
    sock.sendall(request)
    assert read_response(sock)[0] == 200
    sock.sendall(b"GET /healthz HT")  # the keep-alive timer (30 s) stops; the head deadline holds
    assert closed_by_server(sock, within=SMALL.head_timeout_s + 2)


def test_stalled_body_gets_408_at_the_body_deadline(central):
    sock = connect(central)
    sock.sendall(head(length=50_000) + b"\x1f\x8b")
    started = time.monotonic()
    status, headers, body = read_response(sock, timeout=SMALL.body_timeout_s + 3)
    assert status == 408 and json.loads(body)["error"] == "timeout"
    assert SMALL.body_timeout_s - 0.2 < time.monotonic() - started < SMALL.body_timeout_s + 2
    assert headers["connection"] == "close"


def test_body_budget_refuses_the_largest_stalled_body_not_the_small_valid_one(central):
    big = connect(central)
    big.sendall(head(length=250_000) + b"\x1f\x8b" + b"\0" * 200_000)  # held, then stalled
    mid = connect(central)
    mid.sendall(head(length=250_000) + b"\x1f\x8b" + b"\0" * 150_000)
    time.sleep(0.3)
    assert valid_upload_ok(central)  # 350 KiB held + a small body: within the 400 KiB budget
    third = connect(central)
    third.sendall(head(length=250_000) + b"\x1f\x8b" + b"\0" * 100_000)  # past it: the largest goes
    status, headers, body = read_response(big, timeout=5)
    assert status == 503 and json.loads(body)["error"] == "overloaded"
    assert headers["retry-after"] == str(SMALL.retry_after_s)
    assert valid_upload_ok(central)


# ---------------------------------------------------------------- connection and request caps
def test_connection_cap_closes_the_idle_connection_first(central):
    idle = [connect(central) for _ in range(SMALL.max_connections)]
    time.sleep(0.2)
    assert valid_upload_ok(central)  # past the cap: the oldest idle connection made room
    assert closed_by_server(idle[0], within=1.0)
    for sock in idle:
        sock.close()


def test_connection_cap_with_every_connection_busy_sheds_503(central):
    busy = []
    for _ in range(SMALL.max_connections):
        sock = connect(central)
        sock.sendall(head(length=50_000) + b"\x1f\x8b")  # a request in progress, stalled
        busy.append(sock)
    time.sleep(0.3)
    sock = connect(central)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_response(sock, timeout=5)
    assert status == 503 and json.loads(body)["error"] == "overloaded"
    assert headers["retry-after"] == str(SMALL.retry_after_s)
    for sock in busy:  # once the stalled bodies time out, the receiver answers again
        assert read_response(sock, timeout=SMALL.body_timeout_s + 3)[0] == 408
    assert valid_upload_ok(central)


def test_requests_in_progress_cap_sheds_503(store):
    limits = dataclasses.replace(SMALL, max_requests=2, max_connections=50)
    url, stop = start(store, limits)
    try:
        stalled = [connect(url) for _ in range(2)]
        for sock in stalled:
            sock.sendall(head(length=50_000) + b"\x1f\x8b")
        time.sleep(0.3)
        r = post(url, body_of(make_batch(range(3))))
        assert r.status_code == 503 and r.headers["Retry-After"] == str(limits.retry_after_s)
        assert r.json()["error"] == "overloaded"
    finally:
        stop()


def test_ingest_slot_wait_sheds_503_instead_of_timing_out(store):
    entered, release = hold_ingest(store)
    url, stop = start(store, dataclasses.replace(SMALL, ingest_slots=1, ingest_wait_s=0.5))
    try:
        first = threading.Thread(target=post, args=(url, body_of(make_batch(range(3)))))
        first.start()
        assert entered.wait(5)
        r = post(url, body_of(make_batch(range(3, 6))))
        assert r.status_code == 503 and r.json()["error"] == "overloaded"
        assert r.headers["Retry-After"] == str(SMALL.retry_after_s)
        assert protocol.HEADER_RECEIPT in r.headers  # the node backs off without blaming the path
        release.set()
        first.join(10)
    finally:
        release.set()
        stop()


# ---------------------------------------------------------------- configuration
def test_limits_table_parses_and_names_bad_keys():
    limits = parse_limits({"max_readings": 100, "body_timeout_s": 5})
    assert (limits.max_readings, limits.body_timeout_s) == (100, 5.0)
    with pytest.raises(ConfigError, match=r"\[limits\] max_reading: unknown key"):
        parse_limits({"max_reading": 1})
    with pytest.raises(ConfigError, match=r"max_connections: expected an integer"):
        parse_limits({"max_connections": 1.5})
    with pytest.raises(ConfigError, match=r"max_body: expected at least 1024"):
        parse_limits({"max_body": 10})
    text = describe_limits()
    assert all(f"{name} = " in text for name in ("max_readings", "max_connections", "body_timeout_s"))


def test_serve_help_lists_the_limits_and_config_sets_them(tmp_path, cli_env):
    from tests.central.test_cli import run, start_server

    help_text = run(["serve", "--help"], cli_env).stdout
    assert "[limits]" in help_text and "max_readings = 10000" in help_text
    conf = tmp_path / "central.toml"
    conf.write_text("[limits]\nmax_readngs = 5\n")
    db = f"sqlite:///{tmp_path / 'c.db'}"
    bad = run(["serve", "--listen", "127.0.0.1:0", "--db", db, "--config", str(conf)], cli_env)
    assert bad.returncode == 78 and "[limits] max_readngs: unknown key" in bad.stderr, bad.stderr
    conf.write_text("[limits]\nmax_readings = 5\n")
    store = open_store(db)
    store.add_node(NODE, KEY, now_ms())
    store.close()
    proc, url = start_server(["--db", db, "--config", str(conf)], cli_env)
    try:
        r = post(url, body_of(make_batch(range(6))))
        assert r.status_code == 413 and r.json()["limit"] == 5
    finally:
        proc.terminate()
        proc.wait(10)


def test_oversized_headers_are_a_json_400_naming_the_limit(central):
    sock = connect(central)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    status, headers, body = read_response(sock, timeout=5)
    assert status == 400 and json.loads(body)["limit"] == 16 * 1024


def test_central_unit_bounds_files_and_memory():
    from tests.conftest import ROOT

    unit = (ROOT / "systemd" / "streetnode-central.service").read_text()
    assert "\nLimitNOFILE=4096\n" in unit and "\nMemoryMax=512M\n" in unit
    assert IngestLimits().max_connections + 256 <= 4096


def test_the_node_honours_a_503_overloaded_and_keeps_its_readings(store, tmp_path):
    from node.buffer import SqliteBuffer
    from tests.uploader.conftest import fill
    from tests.uploader.test_uploader import make_uploader

    node = "hn-test-0001"
    store.add_node(node, KEY, now_ms())
    entered, release = hold_ingest(store, NODE)  # another node's batch holds the only slot
    limits = dataclasses.replace(SMALL, ingest_slots=1, ingest_wait_s=0.3, retry_after_s=20)
    url, stop = start(store, limits)
    buf = SqliteBuffer(tmp_path / "buf.db", node)
    other = threading.Thread(target=post, args=(url, body_of(make_batch(range(3)))))
    try:
        other.start()
        assert entered.wait(5)
        total = fill(buf, 4)
        up = make_uploader(buf, url, KEY, live_readings=10, max_batch_readings=10)
        res = up.run_round()
        assert res.error is not None and "503 overloaded" in res.error
        assert res.next_attempt_at - time.monotonic() >= 15  # Retry-After is the floor
        assert up.breaker.untrusted == 0  # signed: not counted against the path
        assert buf.stats().readings == total and store.seqs(node, 1) == []
    finally:
        release.set()
        other.join(10)
        buf.close()
        stop()


def test_repeated_uvicorn_warnings_are_let_through_once_a_minute():
    import logging

    from central.http import QuietRepeats

    clock = [0.0]
    quiet = QuietRepeats(every_s=60, monotonic=lambda: clock[0])

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, None, None)

    assert quiet.filter(record("Invalid HTTP request received."))
    assert not any(quiet.filter(record("Invalid HTTP request received.")) for _ in range(1000))
    assert quiet.filter(record("something else"))
    assert quiet.filter(record("boom", logging.ERROR)) and quiet.filter(record("boom", logging.ERROR))
    clock[0] = 61.0
    again = record("Invalid HTTP request received.")
    assert quiet.filter(again) and "1000 more in the last 61 s" in again.msg


def test_a_flood_of_one_refusal_never_hides_another_and_the_rest_is_counted_at_shutdown():
    """Refusals are summed per status and code; what is still held back when the receiver stops
    is written then, so every 5xx is accounted for in the log."""
    import logging

    from central.http import QuietRepeats

    clock = [0.0]
    quiet = QuietRepeats(every_s=60, monotonic=lambda: clock[0], key_args=2)
    logger = logging.getLogger("streetnode.test.quiet")
    logger.propagate = False
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.addHandler(Keep())
    logger.addFilter(quiet)
    try:
        for _ in range(5):
            logger.warning("%d %s %s: %s", 503, "overloaded", "/v1/batches", "receiver overloaded")
        logger.warning("%d %s %s: %s", 503, "unavailable", "/v1/batches", "database unavailable")
        clock[0] = 7.0
        quiet.flush(logger)
        quiet.flush(logger)  # nothing more is held back: writes nothing
    finally:
        logger.removeFilter(quiet)
        logger.handlers.clear()
    assert lines == ["503 overloaded /v1/batches: receiver overloaded",
                     "503 unavailable /v1/batches: database unavailable",
                     "503 overloaded /v1/batches: receiver overloaded (4 more in the last 7 s)"]


def test_bodies_without_the_key_never_queue_and_a_node_gets_two_places(store):
    """While the only ingest slot is busy, a complete body with a made-up signature is refused
    at once (it does not wait holding its body), and a node's third concurrent batch too."""
    entered, release = hold_ingest(store)
    url, stop = start(store, dataclasses.replace(SMALL, ingest_slots=1, ingest_wait_s=5.0))
    threads = []
    try:
        threads.append(threading.Thread(target=post, args=(url, body_of(make_batch(range(3))))))
        threads[0].start()
        assert entered.wait(5)
        started = time.monotonic()
        junk = post(url, body_of(make_batch(range(3, 6))), key=bytes(32))
        assert junk.status_code == 401 and junk.json()["error"] == "bad_signature"
        assert time.monotonic() - started < 2.0
        threads.append(threading.Thread(target=post, args=(url, body_of(make_batch(range(6, 9))))))
        threads[1].start()  # the node's second batch waits for the slot
        time.sleep(0.5)
        third = post(url, body_of(make_batch(range(9, 12))))
        assert third.status_code == 503 and "one at a time" in third.json()["message"]
        assert time.monotonic() - started < 4.0
    finally:
        release.set()
        for t in threads:
            t.join(10)
        stop()
