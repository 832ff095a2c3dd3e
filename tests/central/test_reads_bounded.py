"""Reads never block ingest, and every read is bounded (#13, old #11, item 3), on both stores:
read connections apart from the writer, node counters kept by the ingest transaction, pages with a
cursor that neither repeats nor skips readings that share a wall time, a time bound per statement."""

from __future__ import annotations

import concurrent.futures
import csv
import gzip
import io
import json
import threading
import time

import pytest
import requests

from central.readpool import ReadPool
from central.reads import READ_HANDLERS
from node.model import Batch, Gap, Incident, Reading
from node.protocol import encode_batch
from tests.central.helpers import KEY, NODE, body_of, get, make_batch, now_ms, post, write_transaction_held

T0 = 1_764_100_000_000


def send(url: str, batch: Batch, *, node: str = NODE) -> dict:
    r = post(url, encode_batch(batch, health={"backlog_readings": 0}, sent_ms=now_ms()), node=node)
    assert r.status_code == 200, r.text
    return r.json()


def crowded_batch(epoch: int, seqs: range) -> Batch:
    """Readings of several channels, three wall times only: most readings share their wall time."""
    readings = [Reading(s, f"w.ch{s % 4}_c", float(s), 0, T0 + (s % 3) * 1000, 5, "boot-a") for s in seqs]
    return Batch(1, NODE, epoch, readings)


def all_pages(url: str, auth: dict, limit: int, **params) -> tuple[list[tuple], int]:
    got: list[tuple] = []
    cursor, pages = None, 0
    while True:
        j = get(f"{url}/v1/nodes/{NODE}/readings", auth,
                params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})}).json()
        got += [(x["wall_ms"], x["epoch"], x["seq"]) for x in j["readings"]]
        pages += 1
        assert j["count"] == len(j["readings"]) <= limit
        cursor = j["next"]
        if cursor is None:
            return got, pages


def test_pages_neither_repeat_nor_skip_readings_that_share_a_wall_time(central):
    url, store, auth = central
    send(url, crowded_batch(2, range(0, 40)))
    send(url, crowded_batch(1, range(0, 25)))  # an older epoch: same wall times, sorted before
    expected = sorted((T0 + (s % 3) * 1000, e, s) for e, n in ((2, 40), (1, 25)) for s in range(n))
    for limit in (1, 7, 64, 65, 1000):
        got, pages = all_pages(url, auth, limit)
        assert got == expected, limit
        assert pages == -(-len(expected) // limit), limit  # the last full page already says next: null
    got, _ = all_pages(url, auth, 3, channel="w.ch1_c", since=T0 + 1000)
    assert got == [k for k in expected if k[2] % 4 == 1 and k[0] >= T0 + 1000]
    for limit in (1, 7, 65):  # newest first: the cursor pages backwards
        got, _ = all_pages(url, auth, limit, order="desc")
        assert got == expected[::-1], limit


def test_a_page_boundary_inside_one_wall_time_and_csv_next_header(central):
    url, store, auth = central
    send(url, crowded_batch(1, range(0, 12)))
    r = get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"limit": 5, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 5 and r.headers["x-streetnode-next"] == f"{rows[-1]['wall_ms']}.1.{rows[-1]['seq']}"
    nxt = get(f"{url}/v1/nodes/{NODE}/readings", auth,
              params={"limit": 100, "format": "csv", "cursor": r.headers["x-streetnode-next"]})
    rest = list(csv.DictReader(io.StringIO(nxt.text)))
    assert "x-streetnode-next" not in nxt.headers
    keys = [(int(x["wall_ms"]), int(x["seq"])) for x in rows + rest]
    assert keys == sorted(keys) and len(set(keys)) == 12


@pytest.mark.parametrize("cursor", ["abc", "1.2", "1.2.3.4", "-1.0.0", "1.2.x", "1" * 16 + ".0.0"])
def test_a_malformed_cursor_is_400_naming_it(central, cursor):
    url, _, auth = central
    r = get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"cursor": cursor})
    assert (r.status_code, r.json()["error"], r.json()["field"]) == (400, "bad_query", "cursor")


def test_nodes_are_listed_in_pages(central):
    url, store, auth = central
    for i in range(4):
        store.add_node(f"pole-{i + 2}", KEY, now_ms())
    seen, after = [], None
    while True:
        j = get(url + "/v1/nodes", auth, params={"limit": 2, **({"after": after} if after else {})}).json()
        assert len(j["nodes"]) <= 2
        seen += [n["node_id"] for n in j["nodes"]]
        after = j["next"]
        if after is None:
            break
    assert seen == sorted(f"pole-{i}" for i in range(1, 6))
    for bad in ({"limit": 0}, {"limit": 10_001}, {"after": "a b"}):
        r = get(url + "/v1/nodes", auth, params=bad)
        assert (r.status_code, r.json()["error"]) == (400, "bad_query"), bad


def test_node_counters_follow_every_kind_of_batch(central):
    url, store, auth = central
    gap = Gap(1, 100, 104, 5, None, None, "evicted_size")
    incident = Incident(1, T0, "disk_full", "ENOSPC")
    b = make_batch(range(10))
    b.gaps, b.incidents = [gap], [incident]
    send(url, b)
    again = make_batch(range(5, 15))  # 5 duplicates, the same gap extended, the same incident
    again.gaps = [Gap(1, 100, 109, 10, None, None, "evicted_size"), Gap(1, 100, 102, 3, None, None,
                                                                       "evicted_size")]
    again.incidents = [incident, Incident(2, T0, "sensor_fault", "bme280")]
    assert send(url, again)["stored"] == 5
    other = make_batch(range(3), epoch=2)
    other.gaps = [Gap(2, 7, 7, 1, None, None, "evicted_age")]
    send(url, other)
    (node,) = get(url + "/v1/nodes", auth).json()["nodes"]
    counted = store.transaction(lambda tx: tx.execute(
        "SELECT (SELECT COUNT(*) FROM readings), (SELECT COUNT(*) FROM gaps), (SELECT SUM(count) FROM gaps), "
        "(SELECT COUNT(*) FROM incidents)").fetchone())
    assert (node["readings"], node["gaps"], node["missing_readings"], node["incidents"]) == tuple(
        int(c) for c in counted) == (18, 2, 11, 2)
    # the listing reads the counters, not the readings: rows removed behind the store's back still count
    store.transaction(lambda tx: tx.execute("DELETE FROM readings"), write=True)
    (node,) = get(url + "/v1/nodes", auth).json()["nodes"]
    assert node["readings"] == 18


def test_concurrent_batches_keep_the_counters_exact(central):
    url, store, auth = central

    def upload(part: int) -> None:
        b = make_batch(range(part * 20, part * 20 + 30))  # overlaps the next part by 10 readings
        b.gaps = [Gap(1, 1000, 1000 + part, part + 1, None, None, "evicted_size")]  # one gap, extended
        send(url, b)

    # two at a time: a node has at most 2 batches in progress or waiting (guard's per-node slots)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(upload, range(8)))
    (node,) = get(url + "/v1/nodes", auth).json()["nodes"]
    assert (node["readings"], node["gaps"], node["missing_readings"]) == (170, 1, 8)


def test_a_unit_change_does_not_relabel_older_readings(central):
    url, store, auth = central
    first = Batch(1, NODE, 1, [Reading(s, "w.temperature_c", 20.0, 0, T0 + s, 5, "b") for s in range(3)])
    send(url, first)
    # the same channel sent later with another unit (a firmware that reports kelvin)
    raw = json.loads(gzip.decompress(encode_batch(Batch(2, NODE, 1, [
        Reading(s, "w.temperature_c", 293.15, 0, T0 + s, 5, "b") for s in range(3, 6)]), health={},
        sent_ms=now_ms())))
    raw["channels"][0]["unit"] = "K"
    assert post(url, gzip.compress(json.dumps(raw).encode())).status_code == 200
    send(url, Batch(3, NODE, 1, [Reading(6, "w.temperature_c", 21.0, 0, T0 + 6, 5, "b")]))  # back to °C
    j = get(f"{url}/v1/nodes/{NODE}/readings", auth).json()
    doc_units = [(x["seq"], x["unit"]) for x in j["readings"]]
    assert doc_units == [(0, "°C"), (1, "°C"), (2, "°C"), (3, "K"), (4, "K"), (5, "K"), (6, "°C")]


def test_reads_do_not_wait_for_a_write_transaction(central):
    """A write transaction held open (as a long ingest would) delays no read of the API."""
    url, store, auth = central
    send(url, make_batch(range(6)))
    with write_transaction_held(store, "UPDATE nodes SET last_seen_ms = last_seen_ms WHERE node_id = ?",
                                (NODE,)):
        for path in ("/v1/nodes", f"/v1/nodes/{NODE}/readings"):
            start = time.monotonic()
            r = get(url + path, auth, timeout=5)
            assert r.status_code == 200 and time.monotonic() - start < 2.0, path


def test_uploads_find_a_thread_while_every_read_is_slow(central):
    """60 reads in flight that each take 5 s do not hold back a signed upload: at most READ_HANDLERS
    of them are at work at once, the others wait without a thread (or are shed with 503), and the
    node endpoints have their own threads. (An upload that waited for a thread held by a read would
    take more than those 5 s; the bound leaves room for a loaded CI machine.)"""
    url, store, auth = central
    slow_started = threading.Semaphore(0)
    real = store.list_nodes

    def slow_list_nodes(*args, **kwargs):
        slow_started.release()
        time.sleep(5)
        return real(*args, **kwargs)

    store.list_nodes = slow_list_nodes
    session = requests.Session()
    with concurrent.futures.ThreadPoolExecutor(60) as pool:
        reads = [pool.submit(session.get, url + "/v1/nodes", headers=auth, timeout=60) for _ in range(60)]
        for _ in range(READ_HANDLERS):
            assert slow_started.acquire(timeout=10)
        start = time.monotonic()
        r = post(url, body_of(make_batch(range(3))))
        took = time.monotonic() - start
        answers = [f.result() for f in reads]
    store.list_nodes = real
    assert r.status_code == 200 and took < 4.5, took
    assert {a.status_code for a in answers} <= {200, 503}
    shed = [a for a in answers if a.status_code == 503]
    assert all(a.json()["error"] == "unavailable" and a.headers["retry-after"] == "1" for a in shed)
    assert len(answers) - len(shed) >= 2 * READ_HANDLERS  # ~10 s of 5 s reads, READ_HANDLERS at a time


def test_a_read_past_its_time_bound_is_400_and_a_full_pool_is_503(central):
    url, store, auth = central
    store._read("SELECT 1")  # opens the store's pool
    store._reads = ReadPool(store.read_connector(), timeout_s=0.0)
    r = get(f"{url}/v1/nodes/{NODE}/readings", auth)
    assert (r.status_code, r.json()["error"]) == (400, "too_expensive") and "bound" in r.json()["message"]
    busy = ReadPool(store.read_connector(), pool_size=1, timeout_s=0.3)
    store._reads = busy
    assert busy._slots.acquire(timeout=1)  # the only connection is taken
    try:
        r = get(url + "/v1/nodes", auth)
    finally:
        busy._slots.release()
    assert (r.status_code, r.json()["error"], r.headers["retry-after"]) == (503, "unavailable", "1")
    assert get(url + "/v1/nodes", auth).status_code == 200
    busy.close()
