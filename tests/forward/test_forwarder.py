"""The forwarder against a real Mosquitto: every stored reading once per sink, in stored order."""

from __future__ import annotations

import json
import time

import pytest

from central.forward.config import parse_sink
from central.forward.db import ForwardDb
from central.forward.forwarder import Forwarder
from tests.forward.broker import Recorder
from tests.sta.data import LOCATED, readings, upload


def plain_sink(prefix: str, port: int, **extra):
    return parse_sink({"name": "plain", "layout": "plain", "host": "127.0.0.1", "port": port,
                       "topic_prefix": prefix, "max_messages_per_s": 20_000, "chunk_readings": 97, **extra},
                      "f")


def ids_of(messages) -> list[str]:
    return [json.loads(p)["id"] for t, p in messages if not t.endswith("/attributes")]


def stored_ids(store) -> list[str]:
    """Every stored reading's id, in the order the node numbered them per (node, epoch)."""
    out = []
    for node in ("pole-1", "pole-2"):
        for epoch in (1, 2, 3):
            out += [f"{node}:{epoch}:{s}" for s in store.seqs(node, epoch)]
    return out


def wait_done(forwarder, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while forwarder.stats.readings < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forwarder.stats.readings == count, (forwarder.stats, count)


def test_every_reading_once_in_order_also_while_uploads_arrive(central, prefix, broker_port):
    upload(central.url, "pole-1", 1, readings(100), LOCATED)
    upload(central.url, "pole-2", 1, readings(20), {"firmware": "0.3.0"})
    recorder = Recorder(broker_port, [prefix + "/#"])
    forwarder = Forwarder(plain_sink(prefix, broker_port), ForwardDb.for_store(central.store))
    forwarder.start()
    try:
        for part in range(5):  # more arrives while it forwards
            more = readings(30, first_cycle=part * 30, first_seq=part * 90)
            upload(central.url, "pole-1", 2, more, LOCATED)
        total = 300 + 60 + 450
        wait_done(forwarder, total)
        got = recorder.wait_for(lambda m: len(ids_of(m)) >= total, 30)
    finally:
        forwarder.stop()
        recorder.close()
    ids = ids_of(got)
    assert len(ids) == len(set(ids)) == total  # once each
    assert sorted(ids) == sorted(stored_ids(central.store))
    for node_epoch in ("pole-1:1:", "pole-1:2:", "pole-2:1:"):  # in the order stored
        seqs = [int(i.rsplit(":", 1)[1]) for i in ids if i.startswith(node_epoch)]
        assert seqs == sorted(seqs)
    attributes = [json.loads(p) for t, p in got if t == f"{prefix}/pole-1/attributes"]
    assert attributes and attributes[0]["ward"] == LOCATED["location_ward"]
    first = json.loads(next(p for t, p in got if t == f"{prefix}/pole-1/weather.temperature_c"))
    assert first == {"ts": readings(1)[0].wall_ms, "value": readings(1)[0].value, "flags": 0, "quality": [],
                     "id": "pole-1:1:0"}


def test_one_forwarder_per_sink_and_takeover_from_the_cursor(central, prefix, broker_port):
    upload(central.url, "pole-1", 1, readings(200), LOCATED)
    recorder = Recorder(broker_port, [prefix + "/#"])
    sink = plain_sink(prefix, broker_port, max_messages_per_s=400)
    first = Forwarder(sink, ForwardDb.for_store(central.store), holder="worker-1", lease_ttl_s=2.0)
    second = Forwarder(sink, ForwardDb.for_store(central.store), holder="worker-2", lease_ttl_s=2.0)
    first.start()
    time.sleep(0.3)
    second.start()
    try:
        deadline = time.monotonic() + 30
        while first.stats.readings < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.stats.holding_lease and not second.stats.holding_lease and second.stats.readings == 0
        first.stop()  # worker 1 goes away mid-stream (lease released)
        upload(central.url, "pole-1", 2, readings(50), LOCATED)
        wait_done(second, 600 + 150 - first.stats.readings)
        got = recorder.wait_for(lambda m: len(set(ids_of(m))) >= 750, 30)
    finally:
        second.stop()
        recorder.close()
    ids = ids_of(got)
    assert sorted(set(ids)) == sorted(stored_ids(central.store))
    assert len(ids) == len(set(ids))  # a clean handover repeats nothing


def test_thingsboard_layout_respects_the_size_limit(central, own_broker):
    upload(central.url, "pole-1", 1, readings(400), LOCATED)
    recorder = Recorder(own_broker.port, ["v1/gateway/#"])
    sink = parse_sink({"name": "tb", "host": "127.0.0.1", "port": own_broker.port, "max_message_bytes": 4096,
                       "max_messages_per_s": 5000}, "f")
    forwarder = Forwarder(sink, ForwardDb.for_store(central.store))
    forwarder.start()
    try:
        wait_done(forwarder, 1200)
        expected = forwarder.stats.messages  # connect + attributes + telemetry
        got = recorder.wait_for(lambda m: len(m) >= expected, 30)
    finally:
        forwarder.stop()
        recorder.close()
    topics = [t for t, _ in got]
    assert topics[:2] == ["v1/gateway/connect", "v1/gateway/attributes"]
    assert json.loads(got[0][1]) == {"device": "pole-1", "type": "streetnode"}
    telemetry = [json.loads(p) for t, p in got if t == "v1/gateway/telemetry"]
    assert all(len(p) <= 4096 for t, p in got)
    points = [(item["ts"], key, value) for doc in telemetry for item in doc["pole-1"]
              for key, value in item["values"].items()]
    sent = readings(400)
    want = [(r.wall_ms, r.channel, r.value) for r in sent if r.value is not None]
    want += [(r.wall_ms, f"{r.channel}.flags", r.flags) for r in sent if r.flags]
    assert sorted(points) == sorted(want) and len(points) == len(want)
    stamps = [item["ts"] for doc in telemetry for item in doc["pole-1"]]
    assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))


@pytest.mark.postgres
def test_readings_stored_before_migration_4_are_sent_first(central, prefix, broker_port):
    """PostgreSQL: readings from before `ingest_tx` existed (NULL) go first, in key order."""
    if central.store.dialect != "postgresql":
        pytest.skip("SQLite orders by rowid: no column was added")
    upload(central.url, "pole-1", 1, readings(20), LOCATED)
    central.store.transaction(lambda tx: tx.execute("UPDATE readings SET ingest_tx = NULL"), write=True)
    upload(central.url, "pole-1", 2, readings(10), LOCATED)
    recorder = Recorder(broker_port, [prefix + "/#"])
    forwarder = Forwarder(plain_sink(prefix, broker_port), ForwardDb.for_store(central.store))
    forwarder.start()
    try:
        wait_done(forwarder, 90)
        got = recorder.wait_for(lambda m: len(ids_of(m)) >= 90, 30)
    finally:
        forwarder.stop()
        recorder.close()
    assert ids_of(got) == [f"pole-1:1:{s}" for s in range(60)] + [f"pole-1:2:{s}" for s in range(30)]


@pytest.mark.postgres
def test_a_long_transaction_elsewhere_does_not_hold_forwarding_back(central, prefix, broker_port):
    """PostgreSQL: another schema's open write transaction (an older transaction id) would keep
    pg_snapshot_xmin below our readings; the writer-lock horizon lets them through."""
    if central.store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing to hold back")
    import psycopg

    from tests.central.conftest import PG_URL

    elsewhere = psycopg.connect(PG_URL)  # not autocommit: the transaction stays open
    elsewhere.execute("SELECT pg_current_xact_id()")  # it now has a transaction id, older than ours
    try:
        upload(central.url, "pole-1", 1, readings(30), LOCATED)
        recorder = Recorder(broker_port, [prefix + "/#"])
        forwarder = Forwarder(plain_sink(prefix, broker_port), ForwardDb.for_store(central.store))
        forwarder.start()
        try:
            wait_done(forwarder, 90, 30)
            got = recorder.wait_for(lambda m: len(ids_of(m)) >= 90, 30)
        finally:
            forwarder.stop()
            recorder.close()
    finally:
        elsewhere.rollback()
        elsewhere.close()
    assert ids_of(got) == [f"pole-1:1:{s}" for s in range(90)]
