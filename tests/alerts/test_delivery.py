"""Delivery: a webhook receiver down for a while gets every transition once back, in order, signed,
once per dedupe key; the queue survives a restart; MQTT QoS 1 with a retained state per node;
the read API and acknowledgement by an admin token."""

from __future__ import annotations

import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.enums import CallbackAPIVersion

from central.alerts.db import AlertsDb
from central.alerts.delivery import start_delivery
from tests.alerts.conftest import depth_batch, make_engine
from tests.alerts.test_engine import FLOOD, MIN, doc
from tests.forward.conftest import broker_port  # noqa: F401 (a fixture: 1883, else our own)


def _flood_cycle(engine, node, t0, seq0=1):
    """open, then resolved, from fresh readings at t0..."""
    engine.on_batch(depth_batch(node, [(t0, 25.0), (t0 + 1000, 26.0)], seq0=seq0), t0)
    calm = [(t0 + 2000 + i * MIN, 5.0) for i in range(12)]
    engine.on_batch(depth_batch(node, calm, seq0=seq0 + 2), t0)


def test_a_receiver_down_gets_every_transition_once_back_in_order_and_after_a_restart(
    store, receiver, secret_file
):
    hook = {"name": "city", "type": "webhook", "url": receiver.url, "secret_file": str(secret_file)}
    config_doc = doc(FLOOD, sinks=[hook])
    config_doc["alerts"].update(backoff_initial="50ms", backoff_max="200ms")
    engine = make_engine(store, config_doc)
    receiver.up = False
    workers = start_delivery(engine.config, lambda: AlertsDb.for_store(store))
    engine.on_enqueued = [w.wake for w in workers]
    now = int(time.time() * 1000)
    _flood_cycle(engine, "pole-1", now)
    _flood_cycle(engine, "pole-2", now + 1, seq0=50)
    time.sleep(0.6)
    assert workers[0].failures >= 2 and receiver.events == []
    for w in workers:  # the central restarts while the receiver is down: the queue is a table
        w.stop()
    receiver.up = True
    workers = start_delivery(engine.config, lambda: AlertsDb.for_store(store))
    try:
        events = receiver.wait(4)
    finally:
        for w in workers:
            w.stop()
    assert [(e["alert"]["node"], e["transition"]) for e in events] == [
        ("pole-1", "open"),
        ("pole-1", "resolved"),
        ("pole-2", "open"),
        ("pole-2", "resolved"),
    ]
    assert receiver.bad_signatures == 0 and len(set(receiver.keys)) == 4


def test_mqtt_event_at_qos1_and_retained_state(store, broker_port):  # noqa: F811
    prefix = f"sntest/{uuid.uuid4().hex[:10]}"
    sink = {
        "name": "broker",
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": broker_port,
        "topic_prefix": prefix,
    }
    engine = make_engine(store, doc(FLOOD, sinks=[sink]))
    workers = start_delivery(engine.config, lambda: AlertsDb.for_store(store))
    engine.on_enqueued = [w.wake for w in workers]
    try:
        engine.on_batch(
            depth_batch("pole-1", [(int(time.time() * 1000), 25.0), (int(time.time() * 1000) + 1, 26.0)])
        )
        deadline = time.monotonic() + 10
        while workers[0].delivered < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert workers[0].delivered == 1
    finally:
        for w in workers:
            w.stop()
    got: list[tuple[str, bytes, bool]] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: (got.append((m.topic, m.payload, m.retain)), ready.set())
    client.connect("127.0.0.1", broker_port)
    client.subscribe(f"{prefix}/alerts/+/state", qos=1)
    client.loop_start()
    try:
        assert ready.wait(5)  # a late subscriber still learns the current state: it is retained
    finally:
        client.publish(f"{prefix}/alerts/pole-1/state", b"", qos=1, retain=True).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
    topic, payload, retained = got[0]
    state = json.loads(payload)
    assert topic == f"{prefix}/alerts/pole-1/state" and retained
    assert [a["state"] for a in state["alerts"]] == ["open"]


def test_read_api_lists_and_an_admin_acknowledges(store):
    from central.accounts import Accounts
    from central.server import serve_in_thread

    engine = make_engine(store, doc(FLOOD))
    now = int(time.time() * 1000)
    engine.on_batch(depth_batch("pole-1", [(now, 25.0), (now + 1, 26.0)]), now)
    accounts = Accounts(store)
    reader = {"Authorization": f"Bearer {accounts.add_token('grafana', 'read')}"}
    admin = {"Authorization": f"Bearer {accounts.add_token('ops', 'admin')}"}
    url, stop = serve_in_thread(store, alerts=engine)
    try:
        assert requests.get(f"{url}/v1/alerts", timeout=5).status_code == 401
        [alert] = requests.get(f"{url}/v1/alerts", headers=reader, timeout=5).json()["alerts"]
        assert alert["state"] == "open" and alert["node"] == "pole-1"
        r = requests.post(f"{url}/v1/alerts/{alert['id']}/ack", headers=reader, timeout=5)
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        r = requests.post(
            f"{url}/v1/alerts/{alert['id']}/ack", headers=admin, json={"note": "crew sent"}, timeout=5
        )
        assert (
            r.status_code == 200
            and r.json()["state"] == "acknowledged"
            and r.json()["acknowledged_by"] == "ops"
        )
        r = requests.post(f"{url}/v1/alerts/{alert['id']}/ack", headers=admin, timeout=5)
        assert r.status_code == 409 and r.json()["error"] == "conflict"
        one = requests.get(f"{url}/v1/alerts/{alert['id']}", headers=reader, timeout=5).json()
        assert [(h["transition"], h["actor"]) for h in one["history"]] == [
            ("open", None),
            ("acknowledged", "ops"),
        ]
        assert requests.get(f"{url}/v1/alerts/999", headers=reader, timeout=5).status_code == 404
        assert requests.get(f"{url}/v1/alerts?state=bogus", headers=reader, timeout=5).status_code == 400
    finally:
        stop()
