"""Rules evaluated when a batch is stored: lifecycle, history, late backfill, storm, silent vs buffering."""

from __future__ import annotations

import json

import pytest

from central.alerts.config import parse_alerts
from node.errors import ConfigError
from tests.alerts.conftest import depth_batch, make_engine

NOW = 1_764_100_000_000
MIN = 60_000
FLOOD = {
    "name": "flood",
    "kind": "threshold",
    "channel": "*.depth_cm",
    "above": 20.0,
    "for_readings": 2,
    "clear_below": 15.0,
    "clear_after": "10m",
}


def doc(*rules, sinks=()):
    return {"alerts": {"rules": list(rules), "sinks": list(sinks)}}


def city_hook(secret_file) -> dict:
    """The city's webhook sink (port 9: these tests run no delivery worker, they read the queue)."""
    return {"name": "city", "type": "webhook", "url": "http://127.0.0.1:9/hook",
            "secret_file": str(secret_file)}


def queue(engine):
    return engine.db.read(
        lambda c: c.execute("SELECT sink, dedupe_key, payload FROM alert_deliveries ORDER BY id").fetchall()
    )


def test_depth_opens_after_two_readings_and_resolves_after_ten_calm_minutes(store, secret_file):
    hook = city_hook(secret_file)
    mqtt = {"name": "broker", "type": "mqtt", "host": "127.0.0.1", "topic_prefix": "city"}
    engine = make_engine(store, doc(FLOOD, sinks=[hook, mqtt]))
    assert engine.on_batch(depth_batch("pole-1", [(NOW, 19.0), (NOW + MIN, 21.0)]), NOW + MIN) == 0
    assert engine.on_batch(depth_batch("pole-1", [(NOW + 2 * MIN, 22.5)], seq0=3), NOW + 2 * MIN) == 1
    [alert] = engine.db.list_alerts(("open",), None, 10)
    assert (alert["node"], alert["rule"], alert["value"], alert["late"]) == ("pole-1", "flood", 22.5, False)
    points = [(NOW + (3 + i) * MIN, 14.0) for i in range(10)] + [(NOW + 13 * MIN, 14.0)]
    assert engine.on_batch(depth_batch("pole-1", points, seq0=4), NOW + 13 * MIN) == 1
    assert engine.db.list_alerts(("open", "acknowledged"), None, 10) == []
    assert [e["transition"] for e in engine.db.history(alert["id"])] == ["open", "resolved"]
    rows = queue(engine)
    assert [(sink, key.split("-")[2]) for sink, key, _ in rows] == [
        ("city", "open"),
        ("broker", "open"),
        ("city", "resolved"),
        ("broker", "resolved"),
    ]
    topics = [m["topic"] for m in json.loads(rows[1][2])]
    assert topics == ["city/alerts/pole-1/events", "city/alerts/pole-1/state"]
    state_after_resolve = json.loads(json.loads(rows[3][2])[1]["payload"])
    assert state_after_resolve["alerts"] == []  # the retained current state: nothing open


def test_spikes_and_faults_are_no_evidence_and_other_nodes_do_not_mix(store):
    engine = make_engine(store, doc({**FLOOD, "nodes": ["pole-1", "pole-2"]}))
    spike = 1 << 11
    assert engine.on_batch(depth_batch("pole-1", [(NOW, 40.0), (NOW + MIN, 41.0)], flags=spike), NOW) == 0
    assert engine.on_batch(depth_batch("pole-2", [(NOW, 40.0)]), NOW) == 0
    assert engine.on_batch(depth_batch("pole-1", [(NOW + 2 * MIN, 40.0)], seq0=5), NOW) == 0  # 1 of 2
    assert engine.on_batch(depth_batch("pole-3", [(NOW, 40.0), (NOW + MIN, 41.0)]), NOW) == 0  # not its rule


def test_backfilled_old_readings_are_recorded_late_not_delivered(store, secret_file):
    engine = make_engine(store, doc(FLOOD, sinks=[city_hook(secret_file)]))
    old = NOW - 60 * MIN  # an hour-old outage backlog crossing 20 cm and going back down
    points = [(old, 25.0), (old + MIN, 26.0)] + [(old + (2 + i) * MIN, 10.0) for i in range(12)]
    assert engine.on_batch(depth_batch("pole-1", points), NOW) == 2
    [alert] = engine.db.list_alerts(("resolved",), None, 10)
    assert alert["late"] and not alert["delivered"]
    assert [e["late"] for e in engine.db.history(alert["id"])] == [True, True]
    assert queue(engine) == []
    # a crossing older than what the rule judged since: backfill, recorded as a late alert
    assert engine.on_batch(depth_batch("pole-1", [(old, 50.0), (old + 1, 50.0)], seq0=40), NOW) == 1
    assert [a["late"] for a in engine.db.list_alerts(("open",), None, 10)] == [True]
    assert queue(engine) == []


def test_after_an_outage_the_live_batch_fires_and_the_backfill_is_history(store, secret_file):
    """The node sends its newest readings first, then the backlog, oldest first."""
    engine = make_engine(store, doc(FLOOD, sinks=[city_hook(secret_file)]))
    t0 = NOW - 60 * MIN
    engine.on_batch(depth_batch("pole-1", [(t0, 5.0), (t0 + MIN, 5.0)]), t0 + MIN)  # before the outage
    # pole-1: the water rose and fell during the outage; now it is low: nothing fires
    assert engine.on_batch(depth_batch("pole-1", [(NOW - MIN, 4.0), (NOW, 4.0)], seq0=100), NOW) == 0
    episode = [(t0 + 10 * MIN, 25.0), (t0 + 11 * MIN, 27.0), (t0 + 20 * MIN, 10.0), (t0 + 30 * MIN, 8.0)]
    assert engine.on_batch(depth_batch("pole-1", episode, seq0=3), NOW) == 2
    [late] = engine.db.list_alerts(("resolved",), "pole-1", 10)
    assert late["late"] and [e["transition"] for e in engine.db.history(late["id"])] == ["open", "resolved"]
    # pole-2: the water is still high when the link returns: one live alert, the backfill's
    # crossing is a late event in its history, not a second alert
    engine.on_batch(depth_batch("pole-2", [(t0, 5.0)]), t0)
    assert engine.on_batch(depth_batch("pole-2", [(NOW - MIN, 30.0), (NOW, 31.0)], seq0=100), NOW) == 1
    assert engine.on_batch(depth_batch("pole-2", episode[:2], seq0=3), NOW) == 0
    [live] = engine.db.list_alerts(("open",), "pole-2", 10)
    assert not live["late"]
    assert [(e["transition"], e["late"]) for e in engine.db.history(live["id"])] == [
        ("open", False),
        ("open", True),
    ]
    assert [key.split("-")[2] for _, key, _ in queue(engine)] == ["open"]  # only the live one went out
    # the water falls: the live alert resolves; the rest of the backlog changes nothing
    calm = [(NOW + i * MIN, 5.0) for i in range(1, 12)]
    assert engine.on_batch(depth_batch("pole-2", calm, seq0=200), NOW + 11 * MIN) == 1
    assert engine.on_batch(depth_batch("pole-2", episode[2:], seq0=5), NOW + 11 * MIN) == 0
    assert engine.db.list_alerts(("open", "acknowledged"), "pole-2", 10) == []
    # pole-3: the backlog ends inside an episode the live state never saw: its late alert is
    # closed when the backfill is over (the next batch holds only newer readings)
    engine.on_batch(depth_batch("pole-3", [(t0, 5.0)]), t0)
    engine.on_batch(depth_batch("pole-3", [(NOW, 4.0)], seq0=100), NOW)
    assert engine.on_batch(depth_batch("pole-3", episode[:2], seq0=3), NOW) == 1
    assert [a["late"] for a in engine.db.list_alerts(("open",), "pole-3", 10)] == [True]
    assert engine.on_batch(depth_batch("pole-3", [(NOW + MIN, 4.0)], seq0=101), NOW + MIN) == 1
    assert engine.db.list_alerts(("open",), "pole-3", 10) == []


def test_storm_mode_and_pm25_band(store):
    engine = make_engine(
        store, doc({"name": "storm", "kind": "storm"}, {"name": "air", "kind": "pm25_aqi", "band": "bad"})
    )
    assert (
        engine.on_batch(
            depth_batch("pole-1", [(NOW, 79.0)], channel="air.pm2_5_ugm3", health={"storm": True}), NOW
        )
        == 1
    )
    assert (
        engine.on_batch(
            depth_batch(
                "pole-1", [(NOW + MIN, 80.0)], channel="air.pm2_5_ugm3", health={"storm": False}, seq0=2
            ),
            NOW + MIN,
        )
        == 2
    )
    by_rule = {a["rule"]: a for a in engine.db.list_alerts(("open", "resolved"), None, 10)}
    assert by_rule["storm"]["state"] == "resolved" and by_rule["air"]["state"] == "open"


class Nodes:
    def __init__(self, store):
        self.store = store

    def __call__(self):
        return self.store.list_nodes()


def test_a_silent_node_alerts_a_buffering_one_does_not(store):
    from central.alerts.engine import AlertEngine

    silent = {
        "name": "silent",
        "kind": "silent",
        "after": "10m",
        "buffering_grace": "6h",
        "buffering_age": "2m",
    }
    engine = make_engine(store, doc(silent))
    # both nodes uploaded once; pole-2 said it holds a backlog it could not send (50 min old)
    for node, age_s in (("pole-1", 20.0), ("pole-2", 3000.0)):
        store.ingest(
            depth_batch(node, [(NOW, 1.0)], health={"backlog_readings": 12, "oldest_reading_age_s": age_s}),
            signature=node,
            expires_ms=2 * NOW,
            now_ms=NOW,
        )
    seen = {n.node_id: n.last_seen_ms for n in store.list_nodes()}
    later = max(seen["pole-1"], seen["pole-2"]) + 11 * MIN
    assert isinstance(engine, AlertEngine) and engine.check_silent(later) == 1
    [alert] = engine.db.list_alerts(("open",), None, 10)
    assert alert["node"] == "pole-1" and alert["kind"] == "silent"
    assert engine.node_states(later) == {"pole-1": "silent", "pole-2": "buffering"}  # pole-3: never seen
    assert engine.check_silent(later + MIN) == 0  # one alert, not one per check
    assert engine.on_batch(depth_batch("pole-1", [(later, 1.0)], seq0=9), later) == 1  # it spoke: resolved
    assert engine.db.list_alerts(("open",), None, 10) == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "x", "kind": "depth"}, "alerts.rules[0].kind: expected one of threshold"),
        (
            {**FLOOD, "clear_below": 25.0},
            "alerts.rules[0].clear_below: 25 is above alerts.rules[0].above (20)",
        ),
        ({**FLOOD, "channel": "depth"}, 'alerts.rules[0].channel: expected "<sensor>.<quantity>"'),
        (
            {"name": "air", "kind": "pm25_aqi", "band": "awful"},
            "alerts.rules[0].band: expected a VN_AQI band",
        ),
    ],
)
def test_config_errors_name_the_key(rule, message):
    with pytest.raises(ConfigError) as e:
        parse_alerts(doc(rule))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_two_serve_processes_judging_one_node_open_one_alert(store):
    import threading

    engines = [make_engine(store, doc(FLOOD)) for _ in range(2)]  # each its own connection
    for node in ("pole-1", "pole-2", "pole-3"):
        barrier = threading.Barrier(2)

        def judge(engine, seq0, node=node, barrier=barrier):
            batch = depth_batch(node, [(NOW + seq0, 30.0), (NOW + seq0 + 1, 31.0)], seq0=seq0)
            barrier.wait()
            engine.on_batch(batch, NOW)

        threads = [threading.Thread(target=judge, args=(e, 10 * i)) for i, e in enumerate(engines)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    opened = engines[0].db.list_alerts(("open",), None, 10)
    assert sorted(a["node"] for a in opened) == ["pole-1", "pole-2", "pole-3"]
    for e in engines:
        e.db.close()
