"""Messages from readings: grouping, the size limit, determinism, safe topics; the rate limiter."""

from __future__ import annotations

import json
import threading

import pytest

from central.forward.layouts import FwdReading, PlainLayout, ThingsBoardLayout, TooLarge, topic_level
from central.forward.mqtt import TokenBucket


def reading(seq: int, node: str = "pole-1", *, value: float | None = 20.5, flags: int = 0) -> FwdReading:
    channels = ("weather.temperature_c", "weather.humidity_pct", "air.pm2_5_ugm3")
    return FwdReading(node, 1, seq, channels[seq % 3], value, flags, 1_764_100_000_000 + (seq // 3) * 10_000)


def test_thingsboard_groups_one_entry_per_node_and_time():
    rs = [reading(0), reading(1), reading(2, value=None, flags=8), reading(3), reading(0, "pole-2")]
    [msg] = ThingsBoardLayout(65536).reading_messages(rs)
    assert msg.topic == "v1/gateway/telemetry" and msg.readings == 5
    doc = json.loads(msg.payload)
    assert doc == {
        "pole-1": [{"ts": 1_764_100_000_000, "values": {"weather.temperature_c": 20.5,
                                                         "weather.humidity_pct": 20.5,
                                                         "air.pm2_5_ugm3.flags": 8}},
                   {"ts": 1_764_100_010_000, "values": {"weather.temperature_c": 20.5}}],
        "pole-2": [{"ts": 1_764_100_000_000, "values": {"weather.temperature_c": 20.5}}]}


def test_thingsboard_splits_at_the_size_limit_keeping_order():
    rs = [reading(i, f"pole-{i % 4}") for i in range(3000)]
    layout = ThingsBoardLayout(2048)
    messages = layout.reading_messages(rs)
    assert len(messages) > 10 and all(len(m.payload) <= 2048 for m in messages)
    assert sum(m.readings for m in messages) == 3000
    seen = [(node, item["ts"], key) for m in messages for node, items in json.loads(m.payload).items()
            for item in items for key in item["values"]]
    assert sorted(seen) == sorted((r.node_id, r.wall_ms, r.channel) for r in rs)
    assert layout.reading_messages(rs) == messages  # byte-identical on a resend


def test_plain_layout_topics_and_payloads():
    rs = [reading(0), FwdReading("pole-1", 2, 7, "odd/ch+an#nel", None, 8, 5)]
    layout = PlainLayout("city/x", 1024)
    a, b = layout.reading_messages(rs)
    assert a.topic == "city/x/pole-1/weather.temperature_c"
    assert json.loads(a.payload) == {"ts": 1_764_100_000_000, "value": 20.5, "flags": 0, "quality": [],
                                     "id": "pole-1:1:0"}
    assert b.topic == "city/x/pole-1/odd_ch_an_nel" and json.loads(b.payload)["quality"] == ["fault"]
    [attrs] = layout.attribute_messages("pole-1", {"location_ward": "Ben Nghe", "firmware": "0.3"})
    assert attrs.retain and json.loads(attrs.payload) == {"firmware": "0.3", "ward": "Ben Nghe"}
    assert topic_level("a/b+c#") == "a_b_c_"
    with pytest.raises(TooLarge):
        PlainLayout("p", 60).reading_messages([reading(0)])


def test_token_bucket_paces_to_the_rate():
    now = [0.0]
    bucket = TokenBucket(10.0, 2.0, clock=lambda: now[0])
    assert [bucket.delay() for _ in range(2)] == [0.0, 0.0]  # the burst
    assert bucket.delay() == pytest.approx(0.1)
    now[0] += 0.1
    assert bucket.delay() == 0.0
    stop = threading.Event()
    stop.set()
    assert TokenBucket(1.0, 1.0, clock=lambda: 0.0).take(stop) is True  # a token is there
    empty = TokenBucket(1.0, 1.0, clock=lambda: 0.0)
    empty.delay()
    assert empty.take(stop) is False  # stopping ends the wait
