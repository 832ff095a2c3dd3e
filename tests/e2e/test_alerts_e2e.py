"""#15 end to end, real processes: the agent on the emulated storm, `streetnode-central serve` with
``[alerts]``, the machine's Mosquitto, and a webhook receiver of the test's own.

The water rises past 20 cm with the uplink cut (a proxy refusing every connection): the pole's light
turns on regardless. The link comes back: exactly one "open" reaches each sink. The water falls:
"resolved" reaches each. A node killed after its first upload becomes "silent"; a node whose uplink
fails while it holds an old backlog is "buffering" and raises no silent alert.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from central.store import open_store
from tests.alerts.conftest import SECRET, Receiver
from tests.central.test_cli import start_server
from tests.conftest import ROOT
from tests.forward.broker import Recorder
from tests.forward.conftest import broker_port  # noqa: F401 (a fixture: 1883, else our own)
from tests.support.faultproxy import FaultProxy

NODES = ("pole-1", "pole-2", "pole-3")


def _central_config(tmp_path: Path, hook_url: str, prefix: str, port: int) -> Path:
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(SECRET)
    conf = tmp_path / "central.toml"
    conf.write_text(f"""
[alerts]
backoff_initial = "0.2s"
backoff_max = "1s"

[[alerts.rules]]
name = "flood"
kind = "threshold"
channel = "flood.depth_cm"
above = 20.0
for_readings = 2
clear_below = 15.0
clear_after = "0s"

[[alerts.rules]]
name = "silent"
kind = "silent"
after = "4s"
buffering_age = "3s"

[[alerts.sinks]]
name = "city"
type = "webhook"
url = "{hook_url}"
secret_file = "{secret}"

[[alerts.sinks]]
name = "broker"
type = "mqtt"
host = "127.0.0.1"
port = {port}
topic_prefix = "{prefix}"
""")
    return conf


def _node_config(
    tmp_path: Path, node: str, url: str, key: bytes, *, scenario: str, sensors: str, upload: str = ""
) -> Path:
    key_file = tmp_path / f"{node}.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    path = tmp_path / f"{node}.toml"
    path.write_text(f"""
[node]
id = "{node}"
state_dir = "{tmp_path / node}"
[central]
url = "{url}"
key_file = "{key_file}"
connect_timeout = "1s"
read_timeout = "2s"
[upload]
interval = "1s"
backoff_initial = "0.2s"
backoff_max = "1s"
{upload}
[storm]
interval = "0.2s"
upload_interval = "1s"
{sensors}
[emulation]
enabled = true
scenario = "{scenario}"
""")
    return path


STORM_SENSORS = """
[[sensors]]
type = "bme280"
name = "weather"
interval = "0.2s"
[[sensors]]
type = "flood"
name = "flood"
trigger_pin = 23
echo_pin = 24
mount_height_cm = 300
interval = "0.2s"
[[alarms]]
name = "light"
pin = 22
channel = "flood.depth_cm"
on_at = 20.0
on_readings = 2
off_below = 15.0
off_after = "10m"
"""
CALM_SENSORS = '[[sensors]]\ntype = "bme280"\nname = "weather"\ninterval = "0.2s"\n'


def _start_agent(cfg: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "node", "--config", str(cfg), "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _agent_state(tmp_path: Path, node: str) -> dict:
    try:
        return json.loads((tmp_path / node / "agent-state.json").read_text())
    except (OSError, ValueError):
        return {}


def _until(pred, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        for p in procs:
            assert p.poll() is None, f"a process exited while waiting for {what}: {p.stderr.read()[-2000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _batch_seen(store, node: str):
    """The node's info once a batch (not only a signed ping) has arrived."""
    info = _last_seen(store, node)
    return info if info is not None and (info.health or {}).get("oldest_reading_age_s") is not None else None


def _last_seen(store, node: str):
    return next((n for n in store.list_nodes(node) if n.last_seen_ms is not None), None)


def test_flood_alerts_end_to_end(tmp_path, cli_env, broker_port):  # noqa: F811
    env = {**cli_env, "PYTHONUNBUFFERED": "1"}
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(k, None)
    db = f"sqlite:///{tmp_path / 'central.db'}"
    store = open_store(db)
    keys = {node: secrets.token_bytes(32) for node in NODES}
    for node, key in keys.items():
        store.add_node(node, key, int(time.time() * 1000))
    receiver = Receiver()
    prefix = f"sntest/{uuid.uuid4().hex[:10]}"
    recorder = Recorder(broker_port, [f"{prefix}/alerts/#"])
    central, url = start_server(
        ["--db", db, "--config", str(_central_config(tmp_path, receiver.url, prefix, broker_port))], env
    )
    port = int(url.rsplit(":", 1)[1])
    link1 = FaultProxy(port, lifetime=150).start()
    link3 = FaultProxy(port, lifetime=150).start()
    agents: list[subprocess.Popen] = []
    try:
        link1.set("refuse")  # pole-1's uplink is cut from the start
        link3.set("status", status=503)  # pole-3's too: it buffers
        pole1 = _node_config(
            tmp_path, "pole-1", link1.url, keys["pole-1"], scenario="storm", sensors=STORM_SENSORS
        )
        with pole1.open("a") as f:
            f.write('speed = 3600\nstart = "18h"\n')  # 1 s = 1 h; the water passes 20 cm at 19.2 h
        pole2 = _node_config(tmp_path, "pole-2", url, keys["pole-2"], scenario="calm", sensors=CALM_SENSORS)
        pole3 = _node_config(
            tmp_path,
            "pole-3",
            link3.url,
            keys["pole-3"],
            scenario="calm",
            sensors=CALM_SENSORS,
            upload="live_readings = 10\nmax_batch_readings = 10\n",  # small batches: a backlog stays
        )
        agents = [_start_agent(p, env) for p in (pole1, pole2, pole3)]

        # the light turns on with the uplink cut: the node's own decision
        lit = _until(
            lambda: [a for a in _agent_state(tmp_path, "pole-1").get("alarms", []) if a["on"]],
            30,
            "the light on",
            agents,
        )
        assert lit[0]["name"] == "light", lit
        assert lit[0]["value"] >= 20.0 and lit[0]["output"], lit
        assert link1.counts["refuse"] > 0 and _last_seen(store, "pole-1") is None  # nothing got through
        assert receiver.events == []

        # the silent node: uploads once, then dies
        _until(lambda: _last_seen(store, "pole-2"), 20, "pole-2's first upload", agents)
        agents[1].send_signal(signal.SIGKILL)
        # the buffering node: its link lets two requests through (a probe and a small batch; its
        # health shows the old backlog it still holds), then fails again
        time.sleep(4.0)
        link3.set("pass", count=2)
        _until(lambda: _batch_seen(store, "pole-3"), 20, "pole-3's first batch", agents[2:])

        # the link comes back: one "open" per sink
        link1.set("pass")
        events = _until(
            lambda: [e for e in receiver.events if e["alert"]["rule"] == "flood"],
            30,
            "the flood alert at the webhook",
            agents[:1],
        )
        assert events[0]["transition"] == "open" and events[0]["alert"]["node"] == "pole-1"
        assert not events[0]["late"]

        # the water falls: resolved (38.4 h into the storm)
        _until(
            lambda: [
                e for e in receiver.events if e["alert"]["rule"] == "flood" and e["transition"] == "resolved"
            ],
            60,
            "resolved at the webhook",
            agents[:1],
        )
        _until(
            lambda: not [a for a in _agent_state(tmp_path, "pole-1").get("alarms", []) if a["on"]],
            20,
            "the light off",
            agents[:1],
        )
        mqtt_flood = recorder.wait_for(
            lambda m: (
                sum(
                    1
                    for t, p in m
                    if t.endswith("/pole-1/events") and json.loads(p)["transition"] == "resolved"
                )
                >= 1
            ),
            20,
        )
        silent = _until(
            lambda: [e for e in receiver.events if e["alert"]["rule"] == "silent"], 20, "the silent alert"
        )
        time.sleep(2.5)  # a few more silence checks: pole-3 stays buffering
        last3 = _last_seen(store, "pole-3").health
        reader = {"Authorization": "Bearer " + _token(store)}
        states = requests.get(f"{url}/v1/alerts/nodes", headers=reader, timeout=5).json()["nodes"]
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(timeout=15)
            except subprocess.TimeoutExpired:
                agent.kill()
        central.terminate()
        central.wait(timeout=30)
        link1.stop()
        link3.stop()
        recorder.close()
        receiver.close()

    flood = [(e["alert"]["node"], e["transition"]) for e in receiver.events if e["alert"]["rule"] == "flood"]
    assert flood == [("pole-1", "open"), ("pole-1", "resolved")]  # exactly one open, then resolved
    mqtt_events = [
        json.loads(p)["transition"] for t, p in mqtt_flood if t == f"{prefix}/alerts/pole-1/events"
    ]
    assert [e for e in mqtt_events if e != "acknowledged"][:2] == ["open", "resolved"]
    assert mqtt_events.count("open") == 1
    assert any(t == f"{prefix}/alerts/pole-1/state" for t, _ in mqtt_flood)
    assert [(e["alert"]["node"], e["transition"]) for e in silent] == [("pole-2", "open")]
    assert not [
        e for e in receiver.events if e["alert"]["rule"] == "silent" and e["alert"]["node"] == "pole-3"
    ]
    assert last3["oldest_reading_age_s"] >= 3.0, last3  # what the central last heard: an old backlog
    assert states["pole-2"] == "silent" and states["pole-3"] == "buffering"
    assert receiver.bad_signatures == 0
    log = agents[0].stderr.read()
    assert "emulated light (GPIO22) ON" in log and "emulated light (GPIO22) OFF" in log
    store.close()


def _token(store) -> str:
    from central.accounts import Accounts

    return Accounts(store).add_token(f"e2e-{os.getpid()}", "read")
