"""Response classification, Retry-After parsing, backoff and the server's clock."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.upload_policy import (
    Action,
    Backoff,
    PathBreaker,
    classify,
    refused_part,
    retry_after_seconds,
    server_time_ms,
)

NOW = 1_790_000_000.0


RECEIPT = {"stored": 2, "duplicates": 1, "gaps": 0, "incidents": 0, "readings": 3, "batch": 7, "epoch": 1}
EXPECT = (7, 1, 3)


@pytest.mark.parametrize("status", [200, 201, 202])
def test_signed_2xx_that_is_the_receipt_of_the_batch_acks(status):
    v = classify(status, {}, RECEIPT, signed=True, now=NOW, expect=EXPECT)
    assert v.action is Action.ACK and v.trusted


@pytest.mark.parametrize("status", [200, 204])
def test_unsigned_2xx_never_acks(status):
    """A maintenance page answering 200: nothing is believed, everything kept."""
    v = classify(status, {}, RECEIPT, signed=False, now=NOW, expect=EXPECT, summary="text/html 'Down'")
    assert v.action is Action.PATH and not v.trusted and "without a receipt" in v.reason


@pytest.mark.parametrize(("body", "problem"), [
    ("<html>", "not a JSON object"),
    ({**RECEIPT, "batch": 8}, "batch"),
    ({**RECEIPT, "epoch": 2}, "epoch"),
    ({**RECEIPT, "readings": 2, "stored": 1}, "readings"),
    ({**RECEIPT, "stored": 1}, "stored + duplicates + conflicts"),
    ({k: v for k, v in RECEIPT.items() if k != "readings"}, "readings"),
    ({**RECEIPT, "stored": True}, "stored"),
])
def test_signed_2xx_whose_counts_do_not_match_keeps_the_batch(body, problem):
    v = classify(200, {}, body, signed=True, now=NOW, expect=EXPECT)
    assert v.action is Action.PATH and problem in v.reason


def test_conflicts_count_towards_the_receipt():
    body = {**RECEIPT, "stored": 1, "duplicates": 1, "conflicts": 1}
    assert classify(200, {}, body, signed=True, now=NOW, expect=EXPECT).action is Action.ACK


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_signed_transient_statuses_retry(status):
    v = classify(status, {}, None, signed=True, now=NOW)
    assert v.action is Action.RETRY and v.trusted
    assert str(status) in v.reason


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
def test_unsigned_gateway_statuses_retry_untrusted(status):
    v = classify(status, {"Retry-After": "3"}, None, signed=False, now=NOW)
    assert v.action is Action.RETRY and not v.trusted and v.retry_after == 3


def test_network_error_retries_with_its_reason():
    v = classify(None, {}, None, signed=False, now=NOW, network_error="ConnectTimeout: 127.0.0.1")
    assert v.action is Action.RETRY and "ConnectTimeout" in v.reason and not v.trusted


def test_413_splits_but_only_a_signed_one_is_trusted_to_refuse_a_single_reading():
    signed = classify(413, {}, {"error": "too_large"}, signed=True, now=NOW)
    assert signed.action is Action.SPLIT and signed.trusted
    unsigned = classify(413, {}, None, signed=False, now=NOW)  # a proxy's (or a pre-auth) body cap
    assert unsigned.action is Action.SPLIT and not unsigned.trusted


@pytest.mark.parametrize("status", [200, 300, 302, 307, 400, 403, 404, 405, 409, 410, 415, 422, 451, 500])
def test_every_unsigned_answer_other_than_a_gateway_timeout_is_the_path(status):
    v = classify(status, {"Location": "http://portal"}, {"error": "schema", "field": "channels[0]"},
                 signed=False, now=NOW)
    assert v.action is Action.PATH and not v.trusted


@pytest.mark.parametrize("status", [400, 403, 404, 409, 415])
def test_signed_undocumented_4xx_is_the_path_never_a_dead_letter(status):
    v = classify(status, {}, {"error": "bad_json"}, signed=True, now=NOW)
    assert v.action is Action.PATH and v.error_code == "bad_json"


@pytest.mark.parametrize(("field", "action", "part"), [
    ("channels[1].v[0]", Action.SPLIT, ("reading", None)),
    ("stamps.wall[3]", Action.SPLIT, ("reading", None)),
    ("boots[0]", Action.SPLIT, ("reading", None)),
    ("incidents[3].detail", Action.REFUSE_RECORD, ("incident", 3)),
    ("gaps[0].reason", Action.REFUSE_RECORD, ("gap", 0)),
    ("health.firmware", Action.REFUSE_HEALTH, ("health", "firmware")),
    ("node", Action.PATH, None),
    ("v", Action.PATH, None),
    (None, Action.PATH, None),
])
def test_signed_422_is_handled_by_the_field_it_names(field, action, part):
    body = {"error": "schema", "message": "bad", **({"field": field} if field else {})}
    assert classify(422, {}, body, signed=True, now=NOW).action is action
    assert refused_part(field) == part


@pytest.mark.parametrize(("code", "action"), [
    ("stale_timestamp", Action.CLOCK), ("replay", Action.RESIGN),
    ("unknown_node", Action.AUTH_FAILED), ("bad_signature", Action.AUTH_FAILED),
    (None, Action.AUTH_FAILED),
])
def test_signed_401_by_error_code(code, action):
    body = {"error": code} if code else "not json"
    assert classify(401, {}, body, signed=True, now=NOW).action is action


def test_unsigned_401_is_an_auth_failure_that_never_moves_the_clock():
    v = classify(401, {}, {"error": "stale_timestamp", "server_time_ms": 1}, signed=False, now=NOW)
    assert v.action is Action.AUTH_FAILED and not v.trusted


def test_breaker_opens_after_threshold_then_probes_and_reopens_on_probation():
    b = PathBreaker(3)
    assert not b.untrusted_answer("403", 10.0) and not b.untrusted_answer("403", 11.0)
    assert b.untrusted_answer("403", 12.0) and b.open and b.opened_at == 12.0
    b.probe_answered()
    assert b.state == "half_open"
    assert not b.untrusted_answer("404", 20.0) and b.open  # reopened at once, same episode
    b.probe_answered()
    assert b.trusted_answer() == 12.0 and b.state == "closed" and b.untrusted == 0
    assert b.trusted_answer() is None


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
    v = classify(429, {"Retry-After": "12"}, None, signed=True, now=NOW)
    assert v.action is Action.RETRY and v.retry_after == 12.0


def test_retry_after_date_is_read_against_the_corrected_clock():
    """The node clock is 3 days slow: the date is compared with local time + the learned offset."""
    date = email.utils.formatdate(NOW + 10, usegmt=True)
    v = classify(503, {"Retry-After": date}, None, signed=True, now=NOW)  # now = corrected time
    assert v.retry_after == pytest.approx(10.0)
    slow = NOW - 3 * 86400
    assert classify(503, {"Retry-After": date}, None, signed=True, now=slow).retry_after > 86400


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


@given(initial=st.floats(0.1, 100), factor=st.floats(1, 1000), draws=st.lists(st.floats(0, 1), max_size=40),
       retry_after=st.one_of(st.none(), st.floats(0, 1e6)))
def test_backoff_stays_within_zero_and_cap_and_respects_retry_after(initial, factor, draws, retry_after):
    cap = initial * factor
    it = iter(draws)
    b = Backoff(initial, cap, lambda: next(it, 0.5))
    for i in range(len(draws)):
        ceiling = b.ceiling()
        d = b.next_delay(retry_after)
        assert 0 <= d <= cap
        assert ceiling == min(cap, initial * 2**i)
        if retry_after is not None:
            assert d >= min(retry_after, cap)
