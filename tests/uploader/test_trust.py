"""#21: an answer counts only with a valid receipt for exactly that batch (real central, real proxy).

Each test here failed before the receipt policy: a proxy's 403/404/HTML/redirect dead-lettered or
acknowledged whole backlogs; a 200 maintenance page deleted readings with no gap; a removed CA
bundle leaked claims; a poison incident blocked every batch; a Retry-After date was read against a
node clock days off.
"""

from __future__ import annotations

import email.utils
import sqlite3
import time

import pytest

from node import protocol
from node.uploader import Uploader
from tests.buffer.test_disk import ext4_card, go_read_only  # noqa: F401 - fixture
from tests.central.conftest import pg_url  # noqa: F401 - fixture
from tests.uploader.conftest import NODE, fill
from tests.uploader.test_uploader import decoded, drain, make_uploader

MAINTENANCE = "<html><head><title>Down for maintenance</title></head><body>back soon</body></html>"
FORGED_RECEIPT = {"stored": 500, "duplicates": 0, "gaps": 0, "incidents": 0, "readings": 500, "batch": 1,
                  "epoch": 1}
PROXIES = {
    "403-html": {"status": 403, "body": "<html><title>403 Forbidden</title></html>"},
    "404-json": {"status": 404, "body": {"error": "not_found", "message": "no route"}},
    "200-html": {"status": 200, "body": MAINTENANCE},
    "200-forged-json": {"status": 200, "body": FORGED_RECEIPT},
    "302-portal": {"status": 302, "body": "", "headers": {"Location": "http://portal.example/login"}},
    "401-basic-auth": {"status": 401, "body": "auth", "headers": {"WWW-Authenticate": "Basic"}},
    "422-unsigned": {"status": 422, "body": {"error": "schema", "field": "channels[0].v[0]"}},
    "500-html": {"status": 500, "body": "<html>Internal error</html>"},
}


def _pending_kinds(buf):
    batch = buf.claim(1, max_records=200)
    kinds = [i.kind for i in batch.incidents] if batch else []
    if batch:
        buf.release(batch.id)
    return kinds


@pytest.mark.parametrize("kind", sorted(PROXIES))
def test_a_misbehaving_path_keeps_everything_backs_off_opens_the_breaker_and_reports(buf, central, proxy,
                                                                                      kind):
    total = fill(buf, 400)  # 2000 readings waiting
    up = make_uploader(buf, proxy.url, central.key, live_readings=500, max_batch_readings=1000,
                       backoff_initial=1, rng=lambda: 1.0)
    proxy.set("status", **PROXIES[kind])
    results = [up.run_round() for _ in range(6)]  # rounds forced, backoff or not
    assert all(r.readings == 0 and r.dead_lettered == 0 and r.error for r in results)
    assert results[0].next_attempt_at > time.monotonic()  # backed off
    st = buf.stats()
    assert (st.readings, st.claimed, st.gaps_pending, st.dropped_total) == (total, 0, 0, 0)
    assert up.breaker.open and up.status()["path"] == "open"
    assert [r.probed for r in results] == [False, False, False, True, True, True]
    paths = [raw.split(b" ", 2)[1] for raw in proxy.recorded]
    assert paths[:3] == [protocol.INGEST_PATH.encode()] * 3  # 3 batches, then only signed pings
    assert paths[3:] == [protocol.PING_PATH.encode()] * 3
    assert _pending_kinds(buf).count("upload_path") == 1  # reported once per episode
    assert central.seqs() == []

    proxy.set("pass")  # the path is repaired
    results = drain(up)
    assert results[-1].backlog_empty and not up.breaker.open
    assert central.seqs() == list(range(1, total + 1))
    drain(up)  # the incidents ride the next batch
    kinds = [i.kind for i in central.store.incidents(NODE)]
    assert kinds.count("upload_path") == 1 and kinds.count("upload_path_recovered") == 1
    assert central.store.gaps(NODE) == []


def test_the_breaker_saves_the_uplink_while_the_path_is_wrong(buf, central, proxy):
    fill(buf, 200)
    up = make_uploader(buf, proxy.url, central.key, live_readings=500)
    proxy.set("status", status=403, body="<html>no</html>")
    for _ in range(3):
        up.run_round()
    batches_up = proxy.bytes_up
    for _ in range(20):
        up.run_round()
    per_probe = (proxy.bytes_up - batches_up) / 20
    assert per_probe < batches_up / 3 / 2 and per_probe < 600  # a ping is a few hundred bytes


def test_a_signed_2xx_for_another_batch_is_not_an_ack(buf, central, proxy):
    total = fill(buf, 20)
    up = make_uploader(buf, proxy.url, central.key)
    proxy.set("status", count=1, status=200, body={**FORGED_RECEIPT, "batch": 999}, sign_key=central.key)
    res = up.run_round()
    assert res.readings == 0 and "receipt does not match the batch: batch" in res.error
    assert buf.stats().readings == total and buf.stats().claimed == 0
    assert _pending_kinds(buf) == ["receipt_mismatch"]
    assert drain(up)[-1].backlog_empty and central.seqs() == list(range(1, total + 1))


def test_a_signed_2xx_whose_counts_do_not_add_up_is_not_an_ack(buf, central, proxy):
    total = fill(buf, 20)
    up = make_uploader(buf, proxy.url, central.key)
    answer = {**FORGED_RECEIPT, "stored": 10, "readings": 100}
    proxy.set("status", count=1, status=200, body=answer, sign_key=central.key)
    res = up.run_round()
    assert res.readings == 0 and "stored + duplicates + conflicts = 10, sent 100" in res.error
    assert buf.stats().readings == total and buf.stats().claimed == 0


def test_a_removed_ca_bundle_leaks_no_claim_and_backs_off(buf, tmp_path):
    """A CA bundle that vanished after the config was checked: loading it fails once connected
    (a plain OSError from the ssl module), every time, and nothing leaks."""
    import socket

    total = fill(buf, 30)
    gone = tmp_path / "ca.pem"
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never speaks TLS
        port = listener.getsockname()[1]
        up = Uploader(buf, f"https://127.0.0.1:{port}", b"k" * 32, NODE, ca_bundle=str(gone),
                      backoff_initial=5, rng=lambda: 1.0, read_timeout=2)
        for _ in range(3):
            res = up.run_round()
            assert res.error.startswith("FileNotFoundError talking to 127.0.0.1:"), res.error
            assert buf.stats().claimed == 0 and buf.stats().readings == total
        assert not up.ready() and up.status()["consecutive_failures"] == 3
        up.close()


def test_config_refuses_a_ca_bundle_that_does_not_exist(tmp_path):
    from node import config
    from node.errors import ConfigError

    raw = {"node": {"id": "n1"}, "central": {"url": "https://c.example", "ca_bundle": str(tmp_path / "x")}}
    with pytest.raises(ConfigError, match=r"central.ca_bundle: expected a readable CA bundle file"):
        config.validate(raw)
    (tmp_path / "x").write_text("-----BEGIN CERTIFICATE-----\n")
    assert config.validate(raw).central["ca_bundle"] == str(tmp_path / "x")


def _long_incident_from_an_older_version(path, detail):
    db = sqlite3.connect(path)
    db.execute("INSERT INTO incidents(wall_ms, kind, detail, count) VALUES (?,?,?,?)",
               (int(time.time() * 1000), "sensor_fault", detail, None))
    db.commit()
    db.close()


def test_a_poison_incident_is_repaired_before_it_is_sent(buf, central, proxy, tmp_path):
    """Longer than the central's 4096 characters, with a NUL (PostgreSQL refuses it): before, every
    batch carrying it was a 422 and the backlog was dead-lettered batch after batch."""
    total = fill(buf, 400)
    buf.record_incident("sensor_fault", "EIO " * 3000 + "\x00")  # what the node records today
    _long_incident_from_an_older_version(tmp_path / "buffer.db", "x\x00" * 5000)  # what an old one left
    up = make_uploader(buf, proxy.url, central.key, live_readings=500, max_batch_readings=1000)
    results = drain(up)
    assert results[-1].backlog_empty and sum(r.dead_lettered for r in results) == 0
    assert central.seqs() == list(range(1, total + 1))
    incidents = central.store.incidents(NODE)
    assert len(incidents) == 2
    for i in incidents:
        assert len(i.detail) <= protocol.MAX_DETAIL and "\x00" not in i.detail
        assert "more characters cut by the node" in i.detail
    sent = [i.detail for b in decoded(proxy) for i in b.incidents]
    assert sent and all("\x00" not in d and len(d) <= protocol.MAX_DETAIL for d in sent)


@pytest.mark.postgres
def test_a_nul_in_an_incident_reaches_a_postgresql_central(tmp_path, pg_url):  # noqa: F811
    import secrets

    from central.server import serve_in_thread
    from central.store import open_store
    from node.buffer import SqliteBuffer

    store = open_store(pg_url)
    key = secrets.token_bytes(32)
    store.add_node(NODE, key, int(time.time() * 1000))
    url, stop = serve_in_thread(store)
    try:
        with SqliteBuffer(tmp_path / "buffer.db", NODE) as buf:
            total = fill(buf, 20)
            buf.record_incident("sensor_fault", "weather: \x00\x00 garbage from the bus")
            results = drain(Uploader(buf, url, key, NODE, rng=lambda: 0.5))
            assert results[-1].backlog_empty and all(r.error is None for r in results)
        assert store.seqs(NODE, 1) == list(range(1, total + 1))
        assert [i.detail for i in store.incidents(NODE)] == ["weather: \\0\\0 garbage from the bus"]
    finally:
        stop()
        store.close()


def test_a_signed_422_naming_an_incident_replaces_only_that_record(buf, central, proxy):
    total = fill(buf, 20)
    buf.record_incident("sensor_fault", "weather: EIO")
    buf.record_incident("odd", "something this central version refuses")
    up = make_uploader(buf, proxy.url, central.key)
    proxy.set("status", count=1, status=422, sign_key=central.key,
              body={"error": "schema", "field": "incidents[1].kind", "message": "unknown incident kind"})
    res = up.run_round()
    assert res.error is None and res.refused_records == 1 and res.backlog_empty
    assert central.seqs() == list(range(1, total + 1))
    kinds = sorted(i.kind for i in central.store.incidents(NODE))
    assert kinds == ["record_refused", "sensor_fault"]
    note = next(i.detail for i in central.store.incidents(NODE) if i.kind == "record_refused")
    assert "incidents[1].kind" in note and "something this central version refuses" in note


def test_a_signed_422_naming_a_gap_keeps_the_loss_as_an_incident(buf, central, proxy):
    fill(buf, 20)
    batch = buf.claim(5)
    buf.dead_letter(batch.id, "test: refused")  # a pending 'rejected' gap and its incident
    up = make_uploader(buf, proxy.url, central.key)
    proxy.set("status", count=1, status=422, sign_key=central.key,
              body={"error": "schema", "field": "gaps[0].reason", "message": "unknown reason"})
    res = up.run_round()
    assert res.error is None and res.refused_records == 1
    by_kind = {i.kind: i for i in central.store.incidents(NODE)}
    assert by_kind["gap_refused"].count == 5 and "seq 1..5 rejected" in by_kind["gap_refused"].detail


def test_unsigned_answers_never_move_the_clock(buf, central, proxy):
    fill(buf, 5)
    up = make_uploader(buf, proxy.url, central.key)
    wrong = email.utils.formatdate(time.time() + 30 * 86400, usegmt=True)
    proxy.set("status", count=2, status=401, headers={"Date": wrong},
              body={"error": "stale_timestamp", "server_time_ms": int((time.time() + 86400 * 30) * 1000)})
    res = up.run_round()
    assert res.error == "auth failed: HTTP 401 stale_timestamp (unsigned)"
    assert up.clock_offset_ms is None


def test_a_retry_after_date_is_compared_on_the_corrected_clock(buf, central, proxy):
    """The node's clock is 3 days slow; the central says "retry at <date 10 s from now>"."""
    fill(buf, 5)
    slow = 3 * 86400
    up = make_uploader(buf, proxy.url, central.key, clock=lambda: time.time() - slow, backoff_max=600,
                       rng=lambda: 0.0)
    res = up.run_round()  # learns the central's time (401 stale_timestamp, signed), then goes through
    assert res.error is None and abs(up.clock_offset_ms - slow * 1000) < 2000
    fill(buf, 1, start=5)
    date = email.utils.formatdate(time.time() + 10, usegmt=True)
    proxy.set("status", count=1, status=503, retry_after=date, sign_key=central.key,
              body={"error": "unavailable", "message": "busy"})
    now = time.monotonic()
    res = up.run_round()
    assert res.error.startswith("HTTP 503")
    assert 8 <= res.next_attempt_at - now <= 12  # not 600 s (the cap), not 0


def test_a_card_turned_read_only_costs_no_resend_storm(ext4_card, central, proxy):  # noqa: F811
    """#21 item 2: acks that could not be written dropped the claims, so the same batches went out
    again and again (80 POSTs and 385,000 duplicate readings in one round)."""
    from node.buffer import SqliteBuffer

    buf = SqliteBuffer(ext4_card / "buffer.db", NODE)
    total = fill(buf, 400)  # 2000 readings on the card
    go_read_only(ext4_card)
    total += fill(buf, 20, start=400)  # 100 more, held in memory
    up = make_uploader(buf, proxy.url, central.key, live_readings=100, max_batch_readings=500)
    results = drain(up)
    assert results[-1].backlog_empty and sum(r.duplicates for r in results) == 0
    assert proxy.counts["requests"] <= 2 + total // 500 + 2  # each batch once (and the records once)
    rows = central.store.readings(NODE, limit=None)
    assert len({(r.epoch, r.seq) for r in rows}) == len(rows) == total  # each reading once
    assert central.seqs(1) == list(range(1, 2001))  # the card's; the 100 from memory: a volatile epoch
    assert up.run_round().readings == 0 and proxy.counts["requests"] <= 2 + total // 500 + 3
    buf.close()
