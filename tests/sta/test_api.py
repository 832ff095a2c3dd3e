"""The SensorThings API over HTTP, on SQLite and PostgreSQL, against what the nodes really sent."""

from __future__ import annotations

import pytest
import requests

from drivers.quality import names as flag_names
from tests.sta.data import CHANNELS, LOCATED, START_MS, STEP_MS, readings, upload

STREAM = "pole-1:weather.temperature_c"


AUTH: dict[str, str] = {}  # set by the autouse fixture below: every read needs a token


@pytest.fixture(autouse=True)
def _token(request):
    name = "fresh_central" if "fresh_central" in request.fixturenames else "central"
    AUTH.clear()
    AUTH.update(request.getfixturevalue(name).auth)


def get(base: str, path: str, **params):
    return requests.get(base + path, params=params, headers=AUTH, timeout=30)


def ok(base: str, path: str, **params) -> dict:
    r = get(base, path, **params)
    assert r.status_code == 200, r.text
    return r.json()


def walk(url: str, params: dict | None = None) -> tuple[list[dict], int]:
    """Every entity of a collection, following @iot.nextLink; returns (entities, pages)."""
    out, pages = [], 0
    while url:
        r = requests.get(url, params=params, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        doc = r.json()
        out += doc["value"]
        pages += 1
        url, params = doc.get("@iot.nextLink"), None
        assert pages < 500
    return out, pages


def iso(ms: int) -> str:
    from central.sta.model import iso_ms

    return iso_ms(ms)


def sent_of(central, channel: str, node: str = "pole-1") -> list[tuple[tuple[str, int, int], object]]:
    items = [(k, r) for k, r in central.sent.items() if k[0] == node and r.channel == channel]
    return sorted(items, key=lambda kr: (kr[1].wall_ms, kr[0]))


def test_reads_need_a_read_token(central):
    for path in ("", "/Things", f"/Datastreams('{STREAM}')/Observations"):
        r = requests.get(central.sta + path, timeout=30)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text
    r = requests.get(central.sta + "/Things", headers={"Authorization": "Bearer snt_wrong"}, timeout=30)
    assert r.status_code == 401


def test_service_root_lists_sets_and_conformance(central):
    doc = ok(central.sta, "")
    names = [v["name"] for v in doc["value"]]
    assert names == ["Things", "Locations", "HistoricalLocations", "Datastreams", "Sensors",
                     "ObservedProperties", "Observations", "FeaturesOfInterest"]
    assert doc["value"][0]["url"] == central.sta + "/Things"
    conformance = doc["serverSettings"]["conformance"]
    assert "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data" in conformance
    assert not any("create-update-delete" in c for c in conformance)


def test_things_with_locations_and_datastreams(central):
    doc = ok(central.sta, "/Things", **{"$expand": "Locations,Datastreams", "$orderby": "@iot.id"})
    things = {t["@iot.id"]: t for t in doc["value"]}
    assert list(things) == ["pole-1", "pole-2"]
    one = things["pole-1"]
    assert one["properties"]["ward"] == LOCATED["location_ward"]
    assert one["properties"]["label"] == LOCATED["location_label"]
    assert one["properties"]["firmware"] == LOCATED["firmware"]
    [loc] = one["Locations"]
    assert loc["encodingType"] == "application/geo+json"
    assert loc["location"] == {"type": "Point", "coordinates": [LOCATED["location_lon"],
                                                                LOCATED["location_lat"]]}
    assert things["pole-2"]["Locations"] == []
    assert things["pole-2"]["properties"]["ward"] is None
    units = {d["properties"]["channel"]: d["unitOfMeasurement"] for d in one["Datastreams"]}
    assert set(units) == set(CHANNELS)
    assert units["weather.temperature_c"] == {"name": "degree Celsius", "symbol": "°C",
                                              "definition": "ucum:Cel"}
    assert units["air.pm2_5_ugm3"]["definition"] == "ucum:ug/m3"
    stream = next(d for d in one["Datastreams"] if d["@iot.id"] == STREAM)
    temperatures = sent_of(central, "weather.temperature_c")
    first, last = temperatures[0][1], temperatures[-1][1]
    assert stream["phenomenonTime"] == f"{iso(first.wall_ms)}/{iso(last.wall_ms)}"
    assert stream["observedArea"]["type"] == "Point"
    assert "Locations@iot.navigationLink" not in one and "HistoricalLocations@iot.navigationLink" in one


def test_datastream_observations_walked_in_pages_equal_what_was_sent(central):
    got, pages = walk(f"{central.sta}/Datastreams('{STREAM}')/Observations", {"$top": "7"})
    expected = sent_of(central, "weather.temperature_c")
    assert pages == -(-len(expected) // 7)
    assert [o["@iot.id"] for o in got] == [f"{n}:{e}:{s}" for (n, e, s), _ in expected]
    for obs, (_key, reading) in zip(got, expected, strict=True):
        assert obs["result"] == reading.value
        assert obs["phenomenonTime"] == iso(reading.wall_ms)
        assert obs["resultQuality"] == flag_names(reading.flags)
        assert obs["parameters"]["flags"] == reading.flags
        assert obs["resultTime"].endswith("Z")


def test_time_filter_and_result_filters_match_python(central):
    expected = sent_of(central, "air.pm2_5_ugm3")
    lo, hi = START_MS + 20 * STEP_MS, START_MS + 90 * STEP_MS
    cases = {
        f"phenomenonTime ge {iso(lo)} and phenomenonTime lt {iso(hi)}":
            lambda r: lo <= r.wall_ms < hi,
        f"(phenomenonTime gt {iso(lo)} and result ge 40) or result eq null":
            lambda r: (r.wall_ms > lo and r.value is not None and r.value >= 40) or r.value is None,
        "not (result gt 30)": lambda r: not (r.value is not None and r.value > 30),
        "result ne 10": lambda r: r.value != 10,
        f"'{iso(hi)}' gt phenomenonTime": lambda r: r.wall_ms < hi,
    }
    for text, pred in cases.items():
        got, _ = walk(f"{central.sta}/Datastreams('pole-1:air.pm2_5_ugm3')/Observations",
                      {"$filter": text, "$top": "50"})
        want = [f"{n}:{e}:{s}" for (n, e, s), r in expected if pred(r)]
        assert [o["@iot.id"] for o in got] == want, text


def test_count_skip_and_orderby_result_with_nulls(central):
    expected = sent_of(central, "air.pm2_5_ugm3")
    doc = ok(central.sta, "/Datastreams('pole-1:air.pm2_5_ugm3')/Observations",
             **{"$count": "true", "$top": "5", "$skip": "3", "$filter": "result ne null"})
    with_value = [(k, r) for k, r in expected if r.value is not None]
    assert doc["@iot.count"] == len(with_value)
    assert [o["@iot.id"] for o in doc["value"]] == [f"{n}:{e}:{s}" for (n, e, s), _ in with_value[3:8]]
    assert "$skip=" not in doc["@iot.nextLink"]
    only_count = ok(central.sta, "/Datastreams('pole-1:air.pm2_5_ugm3')/Observations",
                    **{"$count": "true", "$top": "0"})
    assert only_count == {"@iot.count": len(expected), "value": []}
    got, _ = walk(f"{central.sta}/Datastreams('pole-1:air.pm2_5_ugm3')/Observations",
                  {"$orderby": "result desc", "$top": "6"})
    # nulls last when descending, ties broken by the id in the same direction
    want = sorted(expected, key=lambda kr: (kr[1].value is not None, kr[1].value or 0, kr[0]), reverse=True)
    assert [o["@iot.id"] for o in got] == [f"{n}:{e}:{s}" for (n, e, s), _ in want]
    got, _ = walk(f"{central.sta}/Datastreams('pole-1:air.pm2_5_ugm3')/Observations",
                  {"$orderby": "result asc,phenomenonTime desc", "$top": "9"})
    want = sorted(expected, key=lambda kr: (kr[1].value is not None, kr[1].value or 0, -kr[1].wall_ms))
    assert [o["result"] for o in got] == [r.value for _, r in want]
    assert len({o["@iot.id"] for o in got}) == len(expected)


def test_select_expand_nested_and_latest_value(central):
    doc = ok(central.sta, "/Things('pole-1')", **{
        "$select": "name",
        "$expand": "Datastreams($select=name,unitOfMeasurement;$orderby=name;"
                   "$expand=Observations($top=1;$orderby=phenomenonTime desc;"
                   "$select=result,phenomenonTime))"})
    assert set(doc) == {"name", "Datastreams"}
    temp = next(d for d in doc["Datastreams"] if d["name"] == "pole-1 weather.temperature_c")
    last = sent_of(central, "weather.temperature_c")[-1][1]
    assert temp["Observations"] == [{"phenomenonTime": iso(last.wall_ms), "result": last.value}]
    assert "Observations@iot.nextLink" in temp
    path_form = ok(central.sta, "/Things('pole-1')", **{"$expand": "Datastreams/Sensor"})
    assert {d["Sensor"]["@iot.id"] for d in path_form["Datastreams"]} == {"pole-1:weather", "pole-1:air"}


def test_navigation_ref_value_and_single_entities(central):
    oid = "pole-1:2:30"
    obs = ok(central.sta, f"/Observations('{oid}')")
    assert obs["@iot.id"] == oid and obs["result"] == central.sent[("pole-1", 2, 30)].value
    thing = ok(central.sta, f"/Observations('{oid}')/Datastream/Thing")
    assert thing["@iot.id"] == "pole-1"
    foi = ok(central.sta, f"/Observations('{oid}')/FeatureOfInterest")
    assert foi["feature"]["coordinates"] == [LOCATED["location_lon"], LOCATED["location_lat"]]
    assert ok(central.sta, f"/Observations('{oid}')/result") == {"result": obs["result"]}
    text = get(central.sta, f"/Observations('{oid}')/phenomenonTime/$value")
    assert text.status_code == 200 and text.text == obs["phenomenonTime"]
    refs = ok(central.sta, "/Things/$ref")
    assert refs["value"] == [{"@iot.selfLink": f"{central.sta}/Things('pole-1')"},
                             {"@iot.selfLink": f"{central.sta}/Things('pole-2')"}]
    prop = ok(central.sta, "/ObservedProperties('pm2_5_ugm3')/Datastreams")
    assert [d["@iot.id"] for d in prop["value"]] == ["pole-1:air.pm2_5_ugm3", "pole-2:air.pm2_5_ugm3"]
    in_ward = ok(central.sta, "/Things", **{"$filter": "properties/ward eq 'Ben Nghe'"})
    assert [t["name"] for t in in_ward["value"]] == ["pole-1"]
    hist = ok(central.sta, "/Things('pole-1')/HistoricalLocations", **{"$expand": "Locations"})
    assert hist["value"][0]["Locations"][0]["@iot.id"] == "pole-1"


def test_data_array(central):
    doc = ok(central.sta, "/Observations", **{"$resultFormat": "dataArray", "$top": "9",
                                               "$select": "id,phenomenonTime,result",
                                               "$filter": "Datastream/Thing/@iot.id eq 'pole-1'"})
    assert [v["components"] for v in doc["value"]] == [["id", "phenomenonTime", "result"]] * 3
    rows = {v["Datastream@iot.navigationLink"]: v["dataArray"] for v in doc["value"]}
    key = f"{central.sta}/Datastreams('{STREAM}')"
    assert rows[key][0] == ["pole-1:1:0", iso(START_MS), central.sent[("pole-1", 1, 0)].value]
    assert sum(v["dataArray@iot.count"] for v in doc["value"]) == 9
    assert "$resultFormat=dataArray" in doc["@iot.nextLink"]
    full = ok(central.sta, f"/Datastreams('{STREAM}')/Observations", **{"$resultFormat": "dataArray"})
    assert full["value"][0]["components"] == ["id", "phenomenonTime", "result", "resultTime", "resultQuality",
                                              "validTime", "parameters"]


@pytest.mark.parametrize("path, params, status, words", [
    ("/Observations", {"$filter": "result gt"}, 400, "at the end"),
    ("/Observations", {"$filter": "result gt 'x'"}, 400, "result is a number"),
    ("/Observations", {"$filter": "phenomenonTime gt 5"}, 400, "date-time"),
    ("/Observations", {"$filter": "substringof('a', name)"}, 400, "function 'substringof' is not supported"),
    ("/Observations", {"$filter": "nosuch eq 1"}, 400, "no filterable property 'nosuch'"),
    ("/Observations", {"$filter": "result add 1 gt 2"}, 400, "arithmetic operator 'add'"),
    ("/Observations", {"$filter": "(result gt 1"}, 400, "expected ')'"),
    ("/Observations", {"$top": "1001"}, 400, "$top: at most 1000"),
    ("/Observations", {"$top": "-1"}, 400, "$top: expected a whole number"),
    ("/Observations", {"$skip": "10001"}, 400, "follow @iot.nextLink"),
    ("/Observations", {"$count": "yes"}, 400, "$count: expected true or false"),
    ("/Observations", {"$orderby": "result sideways"}, 400, "$orderby: expected"),
    ("/Observations", {"$orderby": "nosuch"}, 400, "no sortable property"),
    ("/Observations", {"$select": "nosuch"}, 400, "$select: Observation has no property 'nosuch'"),
    ("/Things", {"$expand": "Observations"}, 400, "no navigation property 'Observations'"),
    ("/Things('pole-1')", {"$select": "nosuch"}, 400, "$select: Thing has no property 'nosuch'"),
    ("/Things", {"$expand": "Datastreams($top=x)"}, 400, "$top: expected a whole number"),
    ("/Things", {"$expand": "Datastreams($format=x)"}, 400, "not allowed inside"),
    ("/Things", {"$resultFormat": "dataArray"}, 400, "only valid for a collection of Observations"),
    ("/Things", {"$resultFormat": "csv"}, 400, "only dataArray"),
    ("/Things", {"$bogus": "1"}, 400, "unknown query option '$bogus'"),
    ("/Things", {"$skiptoken": "abc"}, 400, "$skiptoken: not a token"),
    ("/Widgets", {}, 404, "no entity set 'Widgets'"),
    ("/Things('nosuch')", {}, 404, "no such Thing"),
    ("/Observations('pole-1:x:1')", {}, 404, "node:epoch:seq"),
    ("/Things/Datastreams", {}, 400, "address one Thing by its id first"),
    ("/Things('pole-1')/Widgets", {}, 404, "has no 'Widgets'"),
    ("/Things('pole-1'", {}, 400, "path:"),
])
def test_errors_are_clear(central, path, params, status, words):
    r = get(central.sta, path, **params)
    assert r.status_code == status, r.text
    doc = r.json()
    assert words in doc["message"], doc
    assert doc["error"] in ("bad_query", "not_found") and doc["code"] == status and doc["type"] == "error"


def test_cursor_stays_correct_while_data_arrives(fresh_central):
    c = fresh_central
    url = f"{c.sta}/Datastreams('{STREAM}')/Observations"
    first = requests.get(url, params={"$top": "15"}, headers=AUTH, timeout=30).json()
    # meanwhile: a backfill before the cursor, new readings after it, and a resend of stored ones
    upload(c.url, "pole-1", 3, readings(10, first_cycle=-20), LOCATED)
    upload(c.url, "pole-1", 3, readings(10, first_cycle=100, first_seq=100), LOCATED)
    upload(c.url, "pole-1", 2, readings(3, first_cycle=20), LOCATED)  # duplicates of epoch 2
    rest, _ = walk(first["@iot.nextLink"])
    got = first["value"] + rest
    keys = [(o["phenomenonTime"], o["@iot.id"]) for o in got]
    ids = [o["@iot.id"] for o in got]
    assert len(set(ids)) == len(ids)  # nothing twice
    before = {f"{n}:{e}:{s}" for (n, e, s), _ in sent_of(c, "weather.temperature_c")}
    assert before <= set(ids)  # nothing that was there is skipped
    later = [o for o in got if o["parameters"]["epoch"] == 3 and o["parameters"]["seq"] >= 100]
    assert len(later) == 10  # the later ones arrived; the backfill before the cursor is not in this walk
    times = [o["phenomenonTime"] for o in got]
    assert times == sorted(times) and len(keys) == len(before) + 10


def test_observation_id_is_stable_across_a_resend(fresh_central):
    c = fresh_central
    url = f"{c.sta}/Datastreams('{STREAM}')/Observations"
    before, _ = walk(url, {"$top": "1000"})
    result = upload(c.url, "pole-1", 1, readings(20), LOCATED)  # the node resends after a lost ack
    assert result["stored"] == 0 and result["duplicates"] == 60
    after, _ = walk(url, {"$top": "1000"})
    assert after == before and len(after) == 40
