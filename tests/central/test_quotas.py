"""Per-node quotas (central/quotas.py) and the gap checks: 429 + Retry-After naming the quota."""

from __future__ import annotations

import dataclasses
import time

import pytest

from central.errors import Rejected
from central.limits import IngestLimits
from central.quotas import MAX_PER_NODE, READING_BYTES, SharedQuotas
from central.server import serve_in_thread
from node import protocol
from node.model import Batch, Gap, Incident, Reading
from tests.central.helpers import KEY, NODE, body_of, make_batch, now_ms, post

QUOTA = IngestLimits(quota_readings_per_minute=60, quota_readings_burst=100)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_764_000_000_000

    def __call__(self) -> int:
        return self.now


def test_bucket_goes_into_debt_by_one_batch_then_waits_for_its_refill(store):
    clock = FakeClock()
    quotas = SharedQuotas(store, QUOTA, clock)
    claim = quotas.admit("a")
    quotas.finish("a", claim, readings=150)  # admitted while anything was left: 100 -> -50
    with pytest.raises(Exception) as refused:
        quotas.admit("a")
    assert refused.value.code == "quota" and refused.value.extra["quota"] == "quota_readings_per_minute"
    assert refused.value.extra["retry_after_s"] == 51  # 1 reading a second until above zero
    with pytest.raises(Exception) as known:  # from this process's memory, before any body is read
        quotas.known_empty("a")
    assert known.value.extra["retry_after_s"] == 51
    quotas.known_empty("b")
    quotas.finish("b", quotas.admit("b"))  # another node's bucket is its own
    clock.now += 51_000
    quotas.known_empty("a")
    quotas.finish("a", quotas.admit("a"))
    clock.now += 10**9
    assert quotas.level("a", "readings") == 100  # the refill never fills past the burst
    clock.now -= 10**6
    assert quotas.level("a", "readings") == 100  # a clock that steps back refills (and takes) nothing


def test_one_node_has_one_quota_and_two_claims_over_every_process(store):
    clock = FakeClock()
    first, second = SharedQuotas(store, QUOTA, clock), SharedQuotas(store, QUOTA, clock)  # two workers
    claims = [first.admit("a"), second.admit("a")]
    with pytest.raises(Exception) as busy:
        first.admit("a")
    assert busy.value.code == "overloaded" and f"{MAX_PER_NODE} batches" in str(busy.value)
    first.finish("a", claims[0], readings=60)
    second.finish("a", claims[1], readings=60)  # 100 - 120: the other process's charge counted
    with pytest.raises(Exception) as refused:
        first.admit("a")
    assert refused.value.code == "quota" and refused.value.extra["retry_after_s"] == 21
    assert second.level("a", "readings") == -20


def test_a_claim_left_by_a_dead_process_expires(store):
    clock = FakeClock()
    quotas = SharedQuotas(store, QUOTA, clock)
    quotas.admit("a")
    quotas.admit("a")  # its process died: never finished
    with pytest.raises(Rejected, match="already has 2 batches"):
        quotas.admit("a")
    clock.now += int((QUOTA.ingest_wait_s + 121) * 1000)
    quotas.finish("a", quotas.admit("a"))


def test_default_quota_lets_a_7_day_backlog_drain_at_full_speed():
    from bench import backlog

    limits = IngestLimits()
    week = 7 * backlog.readings_per_day()
    assert week < limits.quota_readings_burst
    assert week * READING_BYTES < limits.quota_bytes_burst
    assert limits.quota_readings_per_minute >= 10 * backlog.readings_per_day() / 1440


@pytest.fixture
def central(store):
    store.add_node(NODE, KEY, now_ms())
    store.add_node("other", KEY, now_ms())
    url, stop = serve_in_thread(store, limits=QUOTA)
    yield url, store
    stop()


def test_readings_quota_is_429_with_retry_after_naming_it_and_signed(central):
    url, store = central
    assert post(url, body_of(make_batch(range(0, 60)))).status_code == 200
    again = post(url, body_of(make_batch(range(0, 60))))  # duplicates cost the same work: 40 -> -20
    assert again.status_code == 200 and again.json()["duplicates"] == 60
    r = post(url, body_of(make_batch(range(60, 70))))
    assert r.status_code == 429, r.text
    assert r.json()["error"] == "quota" and r.json()["quota"] == "quota_readings_per_minute"
    assert int(r.headers["Retry-After"]) == r.json()["retry_after_s"] >= 20
    assert protocol.HEADER_RECEIPT in r.headers  # the node believes it: waits, keeps its readings
    assert store.seqs(NODE, 1) == list(range(60))
    assert post(url, body_of(make_batch(range(3), node="other")), node="other").status_code == 200


def test_stored_bytes_quota_counts_incident_text(store):
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store, limits=dataclasses.replace(QUOTA, quota_bytes_burst=20_000))
    try:
        for n in range(10):
            incidents = [Incident(n * 10 + i, now_ms(), "k", "x" * 4000) for i in range(5)]
            r = post(url, body_of(dataclasses.replace(make_batch([n]), incidents=incidents)))
            if r.status_code != 200:
                break
        assert r.status_code == 429 and r.json()["quota"] == "quota_bytes_per_day"
        assert n == 1  # 5 incidents of 4 KB took the 20 KB bucket below zero in one batch
        assert len(store.incidents(NODE)) == 5
    finally:
        stop()


def _gap_batch(gap: Gap) -> Batch:
    readings = [Reading(s, "weather.temperature_c", 20.0, 0, 1_764_100_000_000 + s, 5_000 + s, "boot-a")
                for s in range(3)]
    return Batch(3, NODE, 1, readings, gaps=[gap])


@pytest.mark.parametrize(("gap", "field"), [
    (Gap(1, 10, 11, 1_000_000, None, None, "evicted_age"), "gaps[0].count"),
    (Gap(1, 10, 11, 2, None, None, "made_up"), "gaps[0].reason"),
])
def test_gap_count_must_equal_its_range_and_reason_be_known(central, gap, field):
    url, store = central
    r = post(url, body_of(_gap_batch(gap)))
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert store.gaps(NODE) == [] and store.seqs(NODE, 1) == []
    ok = post(url, body_of(_gap_batch(dataclasses.replace(gap, count=2, reason="evicted_age"))))
    assert ok.status_code == 200 and ok.json()["gaps"] == 1


def test_the_node_honours_a_quota_429_and_keeps_its_readings(store, tmp_path):
    from node.buffer import SqliteBuffer
    from tests.uploader.conftest import fill
    from tests.uploader.test_uploader import make_uploader

    node = "hn-test-0001"
    store.add_node(node, KEY, now_ms())
    url, stop = serve_in_thread(store, limits=IngestLimits(quota_readings_per_minute=60,
                                                           quota_readings_burst=30))
    buf = SqliteBuffer(tmp_path / "buf.db", node)
    try:
        total = fill(buf, 20)  # 100 readings
        up = make_uploader(buf, url, KEY, live_readings=40, max_batch_readings=40)
        res = up.run_round()
        assert res.error is not None and "429 quota" in res.error
        assert res.next_attempt_at - time.monotonic() >= 10  # Retry-After is a floor under backoff
        assert up.breaker.state == "closed"  # a signed answer: not a broken path
        assert len(store.seqs(node, 1)) + buf.stats().readings == total
    finally:
        buf.close()
        stop()
