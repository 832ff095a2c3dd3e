"""Flood alerts (#15): how fast a crossing reaches a person, and how right the depth is.

1. **Latency**, real parts in one process: an `Agent` on the emulated storm (pin-level ranger,
   register-level BME280) uploading to an in-process central with ``[alerts]`` (a depth rule
   >= 20 cm for 2 readings), the delivery workers, our own webhook receiver and a Mosquitto of our
   own on a free loopback port. Measured per crossing: from the wall time of the reading that
   completed the crossing (the node's cycle stamp) to the webhook's arrival at the receiver and to
   the MQTT event's arrival at a subscriber. Baseline: the node's upload interval (30 s), the wait
   without the alert round that an alarm change starts at once.
2. **Depth error** over the storm's 48 h (25-32 °C, 75-98 % RH, 975-1006 hPa), ranger mounted at
   300 cm: the emulated echo travels at the speed of sound of the scenario's air; the BME280 driver
   reads the emulated chip; `drivers.flood.compensate` corrects with that reading. Baseline: the
   same rangings uncorrected (gpiozero's 343.26 m/s).

``python -m bench.alerts [--quick]``
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

UPLOAD_INTERVAL_S = 30.0


class _Receiver:
    def __init__(self) -> None:
        from tests.support.posthook import PostHook

        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self._hook = PostHook(self._on_post)
        self.url = self._hook.url

    def _on_post(self, headers: Any, body: bytes) -> int:
        self.arrivals.append((time.time(), json.loads(body)))
        return 204

    def close(self) -> None:
        self._hook.close()


def _subscriber(port: int, prefix: str) -> tuple[Any, list[tuple[float, dict[str, Any]]]]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[float, dict[str, Any]]] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: got.append((time.time(), json.loads(m.payload)))
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.subscribe(f"{prefix}/alerts/+/events", qos=1)
    client.loop_start()
    ready.wait(10)
    return client, got


def _agent(tmp: Path, node: str, url: str, key: bytes) -> Any:
    from drivers.emulator import EmulatedRig
    from node import config
    from node.agent import Agent
    from node.sampler import EmulatedHardware

    key_file = tmp / f"{node}.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    cfg = config.validate(
        {
            "node": {"id": node, "state_dir": str(tmp / node), "log_level": "warning"},
            "central": {"url": url, "key_file": str(key_file)},
            "upload": {"interval": f"{UPLOAD_INTERVAL_S:g}s"},
            "storm": {"enabled": False},
            "sensors": [
                {"type": "bme280", "name": "weather", "interval": "0.5s"},
                {
                    "type": "flood",
                    "name": "flood",
                    "trigger_pin": 23,
                    "echo_pin": 24,
                    "mount_height_cm": 300,
                    "interval": "0.5s",
                },
            ],
            "alarms": [
                {"name": "light", "pin": 22, "channel": "flood.depth_cm", "on_at": 20.0, "off_below": 15.0}
            ],
            "emulation": {"enabled": True, "scenario": "storm", "speed": 600.0},
        }
    )
    rig = EmulatedRig("storm", speed=600.0, start_s=19.0 * 3600)  # the water passes 20 cm at 19.2 h
    return Agent(cfg, hardware=EmulatedHardware(rig))


def latency(tmp: Path, crossings: int) -> tuple[list[float], list[float]]:
    """Seconds from the crossing reading to the webhook / the MQTT event, one per crossing."""
    import secrets

    from bench.forward import _start_broker
    from central.alerts.config import parse_alerts
    from central.alerts.db import AlertsDb
    from central.alerts.delivery import start_delivery
    from central.alerts.engine import AlertEngine
    from central.server import serve_in_thread
    from central.store import open_store

    broker, port = _start_broker()
    receiver = _Receiver()
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    secret = tmp / "webhook.secret"
    secret.write_bytes(secrets.token_bytes(32))
    store = open_store(f"sqlite:///{tmp / 'central.db'}")
    config = parse_alerts(
        {
            "alerts": {
                "rules": [
                    {
                        "name": "flood",
                        "kind": "threshold",
                        "channel": "flood.depth_cm",
                        "above": 20.0,
                        "for_readings": 2,
                        "clear_below": 15.0,
                    }
                ],
                "sinks": [
                    {"name": "city", "type": "webhook", "url": receiver.url, "secret_file": str(secret)},
                    {
                        "name": "broker",
                        "type": "mqtt",
                        "host": "127.0.0.1",
                        "port": port,
                        "topic_prefix": prefix,
                    },
                ],
            }
        }
    )
    engine = AlertEngine(config, AlertsDb.for_store(store), list_nodes=store.list_nodes)
    workers = start_delivery(config, lambda: AlertsDb.for_store(store))
    engine.on_enqueued = [w.wake for w in workers]
    url, stop_central = serve_in_thread(store, alerts=engine)
    client, mqtt_got = _subscriber(port, prefix)
    hook_s: list[float] = []
    mqtt_s: list[float] = []
    try:
        for i in range(crossings):
            node = f"bench-{i}"
            key = secrets.token_bytes(32)
            store.add_node(node, key, int(time.time() * 1000))
            agent = _agent(tmp, node, url, key)
            runner = threading.Thread(target=agent.run, daemon=True)
            runner.start()
            deadline = time.monotonic() + 30
            hook = mqtt = None
            while time.monotonic() < deadline and (hook is None or mqtt is None):
                hook = next(
                    (
                        t - e["reading_ms"] / 1000
                        for t, e in receiver.arrivals
                        if e["alert"]["node"] == node and e["transition"] == "open"
                    ),
                    None,
                )
                mqtt = next(
                    (
                        t - e["reading_ms"] / 1000
                        for t, e in mqtt_got
                        if e["alert"]["node"] == node and e["transition"] == "open"
                    ),
                    None,
                )
                time.sleep(0.01)
            agent.stop()
            runner.join(10)
            if hook is None or mqtt is None:
                raise RuntimeError(f"crossing {i}: no alert within 30 s (webhook {hook}, mqtt {mqtt})")
            hook_s.append(hook)
            mqtt_s.append(mqtt)
    finally:
        client.loop_stop()
        client.disconnect()
        for w in workers:
            w.stop()
        stop_central()
        engine.db.close()
        store.close()
        receiver.close()
        broker.terminate()
        broker.wait(timeout=20)
    return hook_s, mqtt_s


def depth_errors() -> tuple[list[float], list[float]]:
    """|depth - truth| (cm) every 30 min of the storm, (corrected, uncorrected)."""
    from drivers.bme280 import BME280
    from drivers.emulator import EmulatedRig
    from drivers.flood import FloodRanger, compensate

    class Clock:
        t = 0.0

        def __call__(self) -> float:
            return self.t

    clock = Clock()
    rig = EmulatedRig("storm", clock=clock, autorun=False, timing=False, seed=7)
    rig.attach_ranger(23, 24, mount_height_cm=300.0)
    ranger = FloodRanger(23, 24, mount_height_cm=300.0, pin_factory=rig.pin_factory, ping_interval_s=0.002)
    bme = BME280(rig.bus(1), 0x76, name="weather")
    corrected, raw_errors = [], []
    ranger.probe()
    try:
        for half_hour in range(0, 97):
            clock.t = half_hour * 1800.0
            seen = ranger.pings_seen
            deadline = time.monotonic() + 3
            while ranger.pings_seen < seen + ranger.pings and time.monotonic() < deadline:
                time.sleep(0.002)
            raw = ranger.read()
            air = bme.read()
            truth = rig.truth().depth_cm
            fixed = compensate(raw, 300.0, air["temperature_c"], air["humidity_pct"], air["pressure_hpa"])
            corrected.append(abs(fixed["depth_cm"] - truth))
            raw_errors.append(abs(raw["depth_cm"] - truth))
    finally:
        ranger.close()
        rig.close()
    return corrected, raw_errors


def run(quick: bool = False) -> list[dict]:
    import logging

    logging.getLogger("streetnode").setLevel(logging.ERROR)  # the agent's and the central's own lines
    rows: list[dict] = []
    corrected, raw_errors = depth_errors()
    base = "same rangings uncorrected (343.26 m/s)"
    rows.append(
        {
            "metric": "depth error over the storm, max (97 rangings, 300 cm mount)",
            "value": max(corrected),
            "unit": "cm",
            "baseline": base,
            "baseline_value": max(raw_errors),
            "ratio": max(corrected) / max(raw_errors),
            "goal": "≤ 1 cm (vs ~5 cm)",
        }
    )
    rows.append(
        {
            "metric": "depth error over the storm, mean",
            "value": statistics.mean(corrected),
            "unit": "cm",
            "baseline": base,
            "baseline_value": statistics.mean(raw_errors),
            "ratio": statistics.mean(corrected) / statistics.mean(raw_errors),
            "goal": "",
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    try:
        crossings = 2 if quick else 5
        hook_s, mqtt_s = latency(tmp, crossings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = f"node upload interval (no alert round), {crossings} crossings"
    for sink, values in (("webhook", hook_s), ("MQTT", mqtt_s)):
        for label, value in (("median", statistics.median(values)), ("max", max(values))):
            rows.append(
                {
                    "metric": f"crossing sample -> {sink} arrival, {label}",
                    "value": value,
                    "unit": "s",
                    "baseline": base,
                    "baseline_value": UPLOAD_INTERVAL_S,
                    "ratio": value / UPLOAD_INTERVAL_S,
                    "goal": "≤ 2 s" if label == "max" else "",
                }
            )
    return rows


if __name__ == "__main__":
    from bench.__main__ import format_table

    print(format_table([{"bench": "alerts", **r} for r in run(quick="--quick" in sys.argv)]))
