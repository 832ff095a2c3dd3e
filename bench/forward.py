"""Forwarding to MQTT (central/forward) against the broker's raw publish rate, same run, same broker.

Baseline: one paho client publishing pre-built plain-layout payloads at QoS 1 back to back (the
same in-flight window as the forwarder, 100) and waiting for every PUBACK. Measured: the forwarder
reading a SQLite (and PostgreSQL) store, building the messages, publishing them and advancing its
cursor, until every stored reading is acknowledged. Both talk to a Mosquitto of our own on a free
loopback port (`mosquitto -p PORT`), so no other test's traffic shares it.

``python -m bench.forward [--quick]``
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.forward.config import parse_sink
from central.forward.db import ForwardDb
from central.forward.forwarder import Forwarder
from central.forward.layouts import FwdReading, PlainLayout
from central.forward.mqtt import MAX_INFLIGHT
from central.store import open_store
from node import protocol
from node.model import Batch, Reading

PG_URL = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CHANNELS = ("weather.temperature_c", "weather.humidity_pct", "weather.pressure_hpa", "air.pm2_5_ugm3")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_broker() -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def _readings(n: int) -> list[Reading]:
    return [Reading(i, CHANNELS[i % 4], round(20 + (i % 997) / 100, 2), 0,
                    1_764_100_000_000 + (i // 4) * 10_000, 500_000 + (i // 4) * 10_000, "boot-a")
            for i in range(n)]


def _fill(url: str, n: int) -> Any:
    store = open_store(url)
    store.add_node("pole-1", bytes(32), 0)
    rs = _readings(n)
    for start in range(0, n, 5000):
        body = protocol.encode_batch(Batch(1, "pole-1", 1, rs[start:start + 5000]), health={}, sent_ms=0)
        batch = protocol.decode_body(body, max_decompressed=64 << 20)
        store.ingest(batch, signature=uuid.uuid4().hex * 2, expires_ms=2**50, now_ms=int(time.time() * 1000))
    return store


def raw_publish_rate(port: int, n: int) -> float:
    """Messages/s of one paho client publishing plain-layout payloads at QoS 1, all acknowledged."""
    layout = PlainLayout("bench/raw", 65536)
    messages = layout.reading_messages([FwdReading("pole-1", 1, r.seq, r.channel, r.value, r.flags, r.wall_ms)
                                        for r in _readings(n)])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        t0 = time.perf_counter()
        infos = [client.publish(m.topic, m.payload, qos=1) for m in messages]
        for info in infos:
            info.wait_for_publish(60)
        elapsed = time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()
    return n / elapsed


def forward_rate(store: Any, port: int, layout: str, n: int) -> float:
    raw = {"name": f"bench-{layout}", "layout": layout, "host": "127.0.0.1", "port": port,
           "topic_prefix": "bench/fwd", "max_messages_per_s": 100_000, "chunk_readings": 2000}
    sink = parse_sink(raw, "bench")
    forwarder = Forwarder(sink, ForwardDb.for_store(store), poll_s=0.05)
    t0 = time.perf_counter()
    forwarder.start()
    try:
        while forwarder.stats.readings < n:
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"forwarded only {forwarder.stats.readings} of {n} in 300 s")
            time.sleep(0.01)
        return n / (time.perf_counter() - t0)
    finally:
        forwarder.stop()


def _pg_url() -> tuple[str, str] | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception:  # no PostgreSQL here: the row says so
        return None
    schema = f"sn_bench_fwd_{uuid.uuid4().hex[:8]}"
    return f"{PG_URL}?schema={schema}", schema


def run(quick: bool = False) -> list[dict]:
    n = 10_000 if quick else 50_000
    rows: list[dict] = []
    broker, port = _start_broker()
    tmp = tempfile.mkdtemp(prefix="bench-forward-")
    try:
        raw = max(raw_publish_rate(port, n) for _ in range(2))
        base = f"one paho client, QoS 1, {n} messages"
        store = _fill(f"sqlite:///{tmp}/central.db", n)
        try:
            for layout in ("plain", "thingsboard"):
                rate = forward_rate(store, port, layout, n)
                note = "1 message per reading" if layout == "plain" else "readings packed per (node, ts)"
                rows.append({"metric": f"forwarded readings/s (sqlite, {layout}: {note})", "value": rate,
                             "unit": "readings/s", "baseline": base, "baseline_value": raw,
                             "ratio": rate / raw, "goal": "≥ 0.5×" if layout == "plain" else ""})
        finally:
            store.close()
        pg = _pg_url()
        if pg is None:
            rows.append({"metric": "forwarded readings/s (postgresql)", "value": None, "unit": "",
                         "goal": "skipped: PostgreSQL unreachable"})
        else:
            url, schema = pg
            store = _fill(url, n)
            try:
                rate = forward_rate(store, port, "plain", n)
                rows.append({"metric": "forwarded readings/s (postgresql, plain)", "value": rate,
                             "unit": "readings/s", "baseline": base, "baseline_value": raw,
                             "ratio": rate / raw, "goal": "≥ 0.5×"})
            finally:
                store.close()
                import psycopg

                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        broker.terminate()
        broker.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    from bench.__main__ import format_table

    print(format_table([{"bench": "forward", **r} for r in run(quick="--quick" in sys.argv)]))
