"""#20 through a real receiver (both stores): the answer's fields, the built-in alert, GET /v1/nodes
and `node list` show conflicts and identities."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from central.alerts.engine import CONFLICT_QUIET_MS, CONFLICT_RULE
from central.server import serve_in_thread
from node import protocol
from node.model import Batch, Gap, Incident, Reading
from tests.central.helpers import KEY, NODE, get, now_ms, post
from tests.conftest import ROOT

T0 = 1_764_100_000_000


def body(seqs, *, boot="boot-a", epoch=1, identity=None, gaps=(), incidents=()):
    readings = [Reading(s, "weather.temperature_c", 20 + s * 0.5, 0, T0 + s * 1000, s * 1000, boot)
                for s in seqs]
    health = {"backlog_readings": 0, "firmware": "0.1.0", **(identity or {})}
    batch = Batch(7, NODE, epoch, readings, gaps=list(gaps), incidents=list(incidents))
    return protocol.encode_batch(batch, health=health, sent_ms=now_ms())


def ident(hw):
    return {"hw_serial": hw, "machine_id": f"m-{hw}", "buffer_id": f"b-{hw}"}


def alerts(url, auth):
    r = get(url + "/v1/alerts?state=open", auth)
    assert r.status_code == 200, r.text
    return [a for a in r.json()["alerts"] if a["rule"] == CONFLICT_RULE.name]


def test_a_rolled_back_buffer_is_answered_recorded_and_alerted(central):
    url, store, auth = central
    r = post(url, body(range(1, 11), identity=ident("A")))
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("stored", "conflicts", "conflict_seqs", "high_seq", "max_epoch")} == \
        {"stored": 10, "conflicts": 0, "conflict_seqs": [], "high_seq": 10, "max_epoch": 1}
    assert alerts(url, auth) == []
    # the same device after a rollback: numbers 6.. again, with new samples (a new boot)
    r = post(url, body(range(6, 13), boot="boot-b", identity=ident("A")))
    answer = protocol.parse_ingest_answer(r.json())
    assert (answer.stored, answer.duplicates, answer.conflicts) == (2, 0, 5)
    assert answer.conflict_seqs == (6, 7, 8, 9, 10) and answer.high_seq == 12
    [alert] = alerts(url, auth)
    assert alert["summary"].startswith(f"node {NODE}'s buffer rolled back: 5 readings of epoch 1 (seq 6..10)")
    assert alert["severity"] == "critical"
    nodes = get(url + "/v1/nodes", auth).json()["nodes"]
    assert (nodes[0]["conflicts"], nodes[0]["identities"], nodes[0]["incidents"]) == (5, 1, 1)
    # a second device under the same id, alternating with the first: the alert says so (same alert)
    assert post(url, body([13], identity=ident("B"))).status_code == 200
    assert post(url, body([14], identity=ident("A"))).status_code == 200
    [alert] = alerts(url, auth)
    assert alert["summary"].startswith(f"two devices share node id {NODE}")


def test_alternating_identities_alone_raise_the_alert(central):
    url, store, auth = central
    assert post(url, body([1], identity=ident("A"))).status_code == 200
    assert post(url, body([1], epoch=2, identity=ident("B"))).status_code == 200
    assert alerts(url, auth) == []  # a card moved to another Pi: not (yet) two devices
    assert post(url, body([2], identity=ident("A"))).status_code == 200
    [alert] = alerts(url, auth)
    assert alert["summary"] == f"two devices share node id {NODE}: 2 identities (hw_serial, machine_id, " \
        "buffer_id) alternate"


def engine_of(store):
    """An alert engine with no rules over ``store`` (the built-in one only), NODE registered."""
    from central.alerts.config import AlertsConfig
    from central.alerts.db import AlertsDb
    from central.alerts.engine import AlertEngine

    store.add_node(NODE, KEY, T0)
    return AlertEngine(AlertsConfig(), AlertsDb.for_store(store), list_nodes=store.list_nodes)


def test_the_alert_resolves_once_the_node_is_quiet(store):
    engine = engine_of(store)
    store.transaction(lambda tx: tx.execute(
        "INSERT INTO reading_conflicts (node_id, epoch, seq, first_seen_ms, last_seen_ms, times, stored, "
        "sent) VALUES (?, 1, 5, ?, ?, 1, 'a', 'b')", (NODE, T0, T0)), write=True)
    assert engine.on_conflict(NODE, clash=False, detail="1 reading", now_ms=T0) == 1
    assert engine.on_conflict(NODE, clash=False, detail="1 reading", now_ms=T0 + 1) == 0  # one at a time
    assert engine.check_conflicts(T0 + CONFLICT_QUIET_MS - 1) == 0
    assert engine.check_conflicts(T0 + CONFLICT_QUIET_MS) == 1
    assert engine.db.list_alerts(("open", "acknowledged"), None, 10) == []
    engine.db.close()


@pytest.mark.parametrize(("kind", "what"), [("buffer_rollback", "rolled back"), ("buffer_lost", "was lost")])
def test_a_node_that_found_its_buffer_rolled_back_or_lost_raises_the_alert(central, kind, what):
    """A node that finds the rollback itself (at its start) sends a new epoch, the hole as a gap and
    an incident: no conflict ever reaches the central, yet the operators must hear of it."""
    url, store, auth = central
    assert post(url, body(range(1, 6))).status_code == 200
    hole = Gap(1, 3, 9, 0, None, None, kind)
    detail = "buffer.db rolled back: epoch 1 holds seqs up to 2"
    incident = Incident(1, T0, kind, detail, 7)
    r = post(url, body([1], epoch=2, gaps=[hole], incidents=[incident]))
    assert r.status_code == 200 and r.json()["conflicts"] == 0, r.text
    [alert] = alerts(url, auth)
    assert alert["summary"] == f"node {NODE}'s buffer {what}: {detail}"
    # the same incident sent again (a lost answer) is not new: still the one alert
    assert post(url, body([2], epoch=2, gaps=[hole], incidents=[incident])).status_code == 200
    assert len(alerts(url, auth)) == 1


def test_an_alert_of_a_reported_hole_resolves_an_hour_after_the_report(store):
    engine = engine_of(store)
    store.transaction(lambda tx: tx.execute(
        "INSERT INTO incidents (node_id, epoch, incident_id, wall_ms, kind, detail, count, received_ms) "
        "VALUES (?, 2, 1, ?, 'buffer_lost', 'gone', NULL, ?)", (NODE, T0, T0)), write=True)
    assert engine.on_conflict(NODE, clash=False, lost=True, detail="gone", now_ms=T0) == 1
    assert engine.check_conflicts(T0 + 60_000) == 0  # no conflict rows, but the report is recent
    assert engine.check_conflicts(T0 + CONFLICT_QUIET_MS) == 1
    engine.db.close()


def test_a_hole_gap_needs_no_exact_count(central):
    url, store, _ = central
    assert post(url, body(range(1, 6))).status_code == 200
    hole = Gap(1, 3, 9, 0, None, None, "buffer_rollback")
    r = post(url, body([], gaps=[hole]))
    assert r.status_code == 200 and r.json()["gaps"] == 1, r.text
    assert [(g.first_seq, g.last_seq, g.count) for g in store.gaps(NODE)] == [(3, 9, 4)]
    other = Gap(1, 20, 29, 0, None, None, "evicted_size")  # the others' counts are still checked
    r = post(url, body([], gaps=[other]))
    assert r.status_code == 422 and r.json()["field"] == "gaps[0].count"


def test_node_list_shows_conflicts_and_identities(store_url, cli_env):
    from central.store import open_store

    store = open_store(store_url)
    try:
        store.add_node(NODE, KEY, T0)
        url, stop = serve_in_thread(store)
        try:
            post(url, body(range(1, 4), identity=ident("A")))
            post(url, body(range(1, 4), boot="other", identity=ident("B")))
        finally:
            stop()
    finally:
        store.close()
    r = subprocess.run([sys.executable, "-m", "central.cli", "node", "list", "--db", store_url],
                       capture_output=True, text=True, env=cli_env, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    header, line = r.stdout.splitlines()[:2]
    assert re.search(r"incidents\s+conflicts\s+ids\s+config$", header)
    assert re.search(rf"^{NODE}\s+\S+ \S+\s+3\s+0\s+0\s+0\s+1\s+3\s+2\s", line), r.stdout
