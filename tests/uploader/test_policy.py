"""Response classification, Retry-After parsing, backoff and the server's clock."""

from __future__ import annotations

import email.utils

import pytest

from node.upload_policy import Action, Backoff, classify, retry_after_seconds, server_time_ms

NOW = 1_790_000_000.0


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_acks(status):
    assert classify(status, {}, {"stored": 3}, now=NOW).action is Action.ACK


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_retry(status):
    v = classify(status, {}, None, now=NOW)
    assert v.action is Action.RETRY
    assert str(status) in v.reason


def test_network_error_retries_with_its_reason():
    v = classify(None, {}, None, now=NOW, network_error="ConnectTimeout: 127.0.0.1")
    assert v.action is Action.RETRY and "ConnectTimeout" in v.reason


def test_413_splits():
    assert classify(413, {}, {"error": "too_large"}, now=NOW).action is Action.SPLIT


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409, 410, 415, 422])
def test_other_4xx_dead_letter(status):
    v = classify(status, {}, {"error": "bad_batch"}, now=NOW)
    assert v.action is Action.DEAD_LETTER
    assert v.error_code == "bad_batch" and "bad_batch" in v.reason


@pytest.mark.parametrize(("code", "action"), [
    ("stale_timestamp", Action.CLOCK), ("replay", Action.RESIGN),
    ("unknown_node", Action.AUTH_FAILED), ("bad_signature", Action.AUTH_FAILED),
    (None, Action.AUTH_FAILED),
])
def test_401_by_error_code(code, action):
    body = {"error": code} if code else "not json"
    assert classify(401, {}, body, now=NOW).action is action


def test_retry_after_delta_seconds_and_http_date():
    assert retry_after_seconds("7", NOW) == 7.0
    assert retry_after_seconds(" 0 ", NOW) == 0.0
    assert retry_after_seconds("-3", NOW) == 0.0
    date = email.utils.formatdate(NOW + 42, usegmt=True)
    assert retry_after_seconds(date, NOW) == pytest.approx(42.0)
    assert retry_after_seconds(email.utils.formatdate(NOW - 100, usegmt=True), NOW) == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert retry_after_seconds(bad, NOW) is None


def test_retry_verdict_carries_retry_after():
    v = classify(429, {"Retry-After": "12"}, None, now=NOW)
    assert v.action is Action.RETRY and v.retry_after == 12.0


def test_backoff_full_jitter_grows_to_cap():
    draws = iter([1.0] * 20)
    b = Backoff(5, 600, lambda: next(draws))
    delays = [b.next_delay() for _ in range(9)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 600, 600]
    b.reset()
    assert b.next_delay() == 5


def test_backoff_jitter_uses_the_whole_range():
    draws = iter([0.0, 0.5, 0.25])
    b = Backoff(4, 100, lambda: next(draws))
    assert [b.next_delay(), b.next_delay(), b.next_delay()] == [0.0, 4.0, 4.0]


def test_retry_after_is_a_floor_clamped_to_cap():
    b = Backoff(5, 600, lambda: 0.0)
    assert b.next_delay(retry_after=30) == 30
    assert b.next_delay(retry_after=86400) == 600
    b2 = Backoff(5, 600, lambda: 1.0)
    b2.failures = 5  # ceiling 160 > Retry-After 3
    assert b2.next_delay(retry_after=3) == 160


def test_backoff_rejects_bad_bounds():
    with pytest.raises(ValueError, match="initial <= cap"):
        Backoff(10, 5, lambda: 0.5)


def test_server_time_prefers_body_then_date_header():
    date = email.utils.formatdate(1_790_000_123, usegmt=True)
    assert server_time_ms({"Date": date}, {"error": "stale_timestamp", "server_time_ms": 17}) == (17, 0)
    assert server_time_ms({"Date": date}, None) == (1_790_000_123_500, 500)
    assert server_time_ms({"date": date, "x-streetnode-server-time": "1790000123456"}, None) == \
        (1_790_000_123_456, 0)
    assert server_time_ms({"Date": "garbage"}, {"server_time_ms": "x"}) is None
    assert server_time_ms({}, {"server_time_ms": True}) is None
