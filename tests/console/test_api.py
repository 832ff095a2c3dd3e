"""The operator read API (central/console/api.py) over both stores."""

from __future__ import annotations

import pytest

from central.console.rollup import HOUR_MS
from node.model import Gap
from tests.central.helpers import get
from tests.console.nodes import ago, health_of, upload

DEPTH, PM25, TEMP = "flood.depth_cm", "air.pm2_5_ugm3", "weather.temperature_c"


def test_latest_gives_every_node_its_newest_value_per_channel_state_and_bands(central):
    url, _store, auth = central
    upload(url, "pole-1", [(DEPTH, 5.0, ago(120)), (DEPTH, 24.0, ago(60)), (PM25, 60.0, ago(60)),
                           (TEMP, 30.5, ago(60)), ("node.cpu_temp_c", 51.0, ago(60))])
    upload(url, "pole-1", [(DEPTH, 2.0, ago(3600))], first_seq=100)  # backfill: older, must not win
    doc = get(url + "/v1/latest", auth).json()
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert sorted(nodes) == ["pole-1", "pole-2"]
    one, two = nodes["pole-1"], nodes["pole-2"]
    assert one["state"] == "live" and two["state"] == "silent"  # pole-2 never uploaded
    assert two["channels"] == {} and two["location"] is None
    assert one["location"] == {"lat": 21.0285, "lon": 105.8542, "ward": "Hoan Kiem",
                               "label": "Dinh Tien Hoang, pole 17"}
    depth = one["channels"][DEPTH]
    assert depth["value"] == 24.0 and depth["unit"] == "cm" and 55 <= depth["age_s"] <= 120
    assert depth["band"] == {"kind": "flood", "level": 2}  # 20 <= 24 < 30
    assert one["channels"][PM25]["band"] == {"kind": "vn_aqi", "level": 2, "name": "poor"}  # 50 < 60 <= 80
    assert "band" not in one["channels"][TEMP]
    assert one["health"]["cpu_temp_c"] == 51.0 and one["health"]["firmware"] == "streetnode 0.1.0"
    assert doc["thresholds"]["flood_bands_cm"] == [10.0, 20.0, 30.0]


def states(url, auth) -> dict[str, str]:
    return {n["node_id"]: n["state"] for n in get(url + "/v1/latest", auth).json()["nodes"]}


def test_a_node_reporting_an_old_backlog_is_buffering(central):
    url, _store, auth = central
    upload(url, "pole-1", [(DEPTH, 1.0, ago(900))], health=health_of("pole-1", backlog_readings=4000,
                                                                      oldest_reading_age_s=900.0))
    assert states(url, auth)["pole-1"] == "buffering"
    upload(url, "pole-1", [(DEPTH, 1.0, ago(5))], first_seq=1)  # caught up: small backlog again
    assert states(url, auth)["pole-1"] == "live"


def test_channels_lists_unit_and_latest(central):
    url, _store, auth = central
    upload(url, "pole-1", [(DEPTH, 3.0, ago(30)), (TEMP, 20.0, ago(30))])
    doc = get(url + "/v1/nodes/pole-1/channels", auth).json()
    assert [(c["channel"], c["unit"], c["value"]) for c in doc["channels"]] == [
        (DEPTH, "cm", 3.0), (TEMP, "°C", 20.0)]
    assert get(url + "/v1/nodes/nope/channels", auth).status_code == 404


def test_series_keeps_peaks_per_bucket_and_bounds_the_points(central):
    url, _store, auth = central
    start = ago(6 * 3600)
    start -= start % HOUR_MS
    values = [(DEPTH, float(i % 50), start + i * 10_000) for i in range(2000)]  # 10 s apart, 5.5 h
    values[777] = (DEPTH, 99.5, values[777][2])  # a short flood peak
    for first in range(0, 2000, 500):
        upload(url, "pole-1", values[first:first + 500], first_seq=first)
    doc = get(url + "/v1/nodes/pole-1/series", auth,
              params={"channel": DEPTH, "since": str(start), "until": str(start + 6 * HOUR_MS)}).json()
    assert doc["step_ms"] == 30_000 and doc["source"] == "readings" and len(doc["t"]) <= 1000
    assert max(doc["max"]) == 99.5 and min(doc["min"]) == 0.0 and sum(doc["count"]) == 2000
    first_bucket = [v for _c, v, t in values if start <= t < start + 30_000]
    assert doc["mean"][0] == pytest.approx(sum(first_bucket) / len(first_bucket))
    hourly = get(url + "/v1/nodes/pole-1/series", auth,
                 params={"channel": DEPTH, "since": str(start), "until": str(start + 6 * HOUR_MS),
                         "step": "1h"}).json()
    raw_hourly = get(url + "/v1/nodes/pole-1/series", auth,
                     params={"channel": DEPTH, "since": str(start), "until": str(start + 6 * HOUR_MS),
                             "step": "3599999ms"}).json()
    assert hourly["source"] == "hourly" and raw_hourly["source"] == "readings"
    assert hourly["count"][:5] == [360] * 5 and sum(hourly["count"]) == 2000
    assert max(hourly["max"]) == 99.5
    assert hourly["mean"][0] == pytest.approx(sum(v for _c, v, t in values[:360]) / 360)
    too_fine = get(url + "/v1/nodes/pole-1/series", auth,
                   params={"channel": DEPTH, "since": "-7d", "step": "1"})
    assert too_fine.status_code == 400 and too_fine.json()["field"] == "step"
    assert "605 s" in too_fine.json()["message"]


def test_relative_since_newest_first_and_unknown_channel(central):
    url, _store, auth = central
    upload(url, "pole-1", [(DEPTH, 1.0, ago(3600)), (DEPTH, 2.0, ago(120)), (DEPTH, 3.0, ago(10))])
    recent = get(url + "/v1/nodes/pole-1/readings", auth, params={"since": "-5m"}).json()
    assert [r["value"] for r in recent["readings"]] == [2.0, 3.0]
    newest = get(url + "/v1/nodes/pole-1/readings", auth, params={"order": "desc", "limit": "1"}).json()
    assert [r["value"] for r in newest["readings"]] == [3.0]
    for path, params in (("/readings", {"channel": "flood.depth"}), ("/series", {"channel": "flood.depth"})):
        r = get(url + "/v1/nodes/pole-1" + path, auth, params=params)
        assert r.status_code == 404, r.text
        assert r.json()["known"] == [DEPTH] and DEPTH in r.json()["message"]
    bad = get(url + "/v1/nodes/pole-1/readings", auth, params={"since": "-5 minutes"})
    assert bad.status_code == 400 and "-5m" in bad.json()["message"]
    assert get(url + "/v1/nodes/pole-1/series", auth, params={"channel": DEPTH, "since": "-5m",
                                                               "until": "-10m"}).status_code == 400


def test_timeline_has_gaps_buffered_and_corrected_stretches_and_completeness(central):
    url, _store, auth = central
    base = ago(3 * 3600)
    base -= base % HOUR_MS
    on_time = [(DEPTH, 1.0, ago(30 + i * 10)) for i in range(3)]
    upload(url, "pole-1", on_time)
    # the hour at base: measured 3 h ago, stored now (buffered), 360 readings; the next hour: 180
    # clock-corrected readings (half the usual rate)
    upload(url, "pole-1", [(DEPTH, 2.0, base + i * 10_000) for i in range(360)], first_seq=10,
           gaps=[Gap(1, 5, 9, 5, base - 60_000, base - 20_000, "evicted_size")])
    upload(url, "pole-1", [(DEPTH, 2.0, base + HOUR_MS + i * 20_000) for i in range(180)], first_seq=1000,
           flags=512)
    doc = get(url + "/v1/nodes/pole-1/timeline", auth, params={"since": str(base - HOUR_MS)}).json()
    assert [(g["first_seq"], g["reason"]) for g in doc["gaps"]] == [(5, "evicted_size")]
    hours = doc["hours"]
    assert hours["buffered_stretches"][0][0] == base and hours["buffered_stretches"][0][1] >= base + HOUR_MS
    assert hours["corrected_stretches"] == [[base + HOUR_MS, base + 2 * HOUR_MS]]
    index = hours["t"].index(base)
    assert hours["stored"][index] == hours["expected"][index]  # complete
    assert hours["stored"][index + 1] < hours["expected"][index + 1]  # half
    assert doc["state"] == "live" and doc["health"]["firmware"] == "streetnode 0.1.0"
    assert get(url + "/v1/nodes/pole-1/timeline", auth, params={"since": "-40d"}).status_code == 400


def test_the_console_api_needs_a_read_role(central):
    url, _store, _auth = central
    for path in ("/v1/latest", "/v1/nodes/pole-1/channels", "/v1/nodes/pole-1/series?channel=x",
                 "/v1/nodes/pole-1/timeline"):
        assert get(url + path, {}).status_code == 401
