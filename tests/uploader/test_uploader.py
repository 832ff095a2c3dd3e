"""The uploader against the real receiver on loopback, with faults injected by a proxy in between."""

from __future__ import annotations

import time

import pytest

from node import protocol
from node.uploader import Uploader
from tests.uploader.conftest import NODE, fill


def make_uploader(buf, url, key, **kw):
    kw.setdefault("rng", lambda: 0.5)
    kw.setdefault("read_timeout", 5)
    return Uploader(buf, url, key, NODE, **kw)


def decoded(proxy):
    return [protocol.decode_body(b, max_decompressed=1 << 24) for b in proxy.bodies()]


def drain(up, rounds=20):
    results = [up.run_round()]
    while not results[-1].backlog_empty and len(results) < rounds:
        results.append(up.run_round())
    return results


def test_live_batch_newest_first_then_backfill_oldest_first(buf, central, proxy):
    total = fill(buf, 400)  # 2000 readings waiting after an outage
    up = make_uploader(buf, proxy.url, central.key, live_readings=100, max_batch_readings=500)
    res = up.run_round()
    assert res.error is None and res.backlog_empty
    assert (res.readings, res.live_readings, res.stored, res.duplicates) == (total, 100, total, 0)
    batches = decoded(proxy)
    first = sorted(r.seq for r in batches[0].readings)
    assert first == list(range(total - 99, total + 1))  # the newest 100 go first
    rest = [sorted(r.seq for r in b.readings) for b in batches[1:]]
    assert [s[0] for s in rest] == sorted(s[0] for s in rest)  # then oldest-first
    assert rest[0][0] == 1 and all(len(s) <= 500 for s in rest)
    assert central.seqs() == list(range(1, total + 1))
    assert buf.stats().readings == 0


def test_500s_back_off_then_every_reading_is_stored_once(buf, central, proxy):
    total = fill(buf, 60)
    up = make_uploader(buf, proxy.url, central.key, backoff_initial=5, backoff_max=60, rng=lambda: 1.0)
    proxy.set("status", count=3, status=500)
    waits = []
    for _ in range(3):
        now = time.monotonic()
        res = up.run_round()
        assert res.error.startswith("HTTP 500") and res.readings == 0
        waits.append(res.next_attempt_at - now)
        assert not up.ready(now)
    assert [round(w) for w in waits] == [5, 10, 20]  # exponential, full jitter drawn at its top
    assert up.status()["consecutive_failures"] == 3
    assert central.seqs() == []
    res = up.run_round()
    assert res.error is None and res.readings == total and res.backlog_empty
    assert up.status()["consecutive_failures"] == 0
    assert central.seqs() == list(range(1, total + 1))


def test_429_retry_after_is_honoured(buf, central, proxy):
    fill(buf, 10)
    up = make_uploader(buf, proxy.url, central.key, backoff_initial=1, backoff_max=600, rng=lambda: 0.0)
    proxy.set("status", count=1, status=429, retry_after="120")
    now = time.monotonic()
    res = up.run_round()
    assert res.error.startswith("HTTP 429")
    assert res.next_attempt_at >= now + 120
    assert not up.ready(now + 100) and up.ready(now + 121)
    assert up.run_round().backlog_empty


def test_slow_response_past_the_timeout_then_exactly_once(buf, central, proxy):
    total = fill(buf, 40)
    up = make_uploader(buf, proxy.url, central.key, read_timeout=1.0)
    proxy.set("delay", count=1, delay=3.0)
    res = up.run_round()
    assert res.error.startswith("no answer from 127.0.0.1:") and "read timeout" in res.error
    assert res.readings == 0
    deadline = time.monotonic() + 10
    while len(central.seqs()) < total and time.monotonic() < deadline:
        time.sleep(0.05)  # the receiver did store the batch whose answer came too late
    assert central.seqs() == list(range(1, total + 1))
    res = up.run_round()
    assert res.error is None and res.backlog_empty
    assert (res.stored, res.duplicates) == (0, total)
    assert central.seqs() == list(range(1, total + 1))
    assert buf.stats().readings == 0


def test_connection_cut_after_store_ack_lost_then_exactly_once(buf, central, proxy):
    total = fill(buf, 300)  # 1500 readings: live batch + 3 backfill batches
    up = make_uploader(buf, proxy.url, central.key, live_readings=100, max_batch_readings=500)
    proxy.set("pass")
    proxy.set("cut", count=1)  # the live batch is stored, its ack lost
    res = up.run_round()
    assert res.error.startswith("connection reset by 127.0.0.1:") and res.readings == 0
    assert len(central.seqs()) == 100
    fill(buf, 20, start=300)  # sampling went on meanwhile
    results = drain(up)
    assert all(r.error is None for r in results) and results[-1].backlog_empty
    assert sum(r.duplicates for r in results) == 100
    assert central.seqs() == list(range(1, total + 100 + 1))


def test_refused_connections_are_retried(buf, central, proxy):
    total = fill(buf, 10)
    up = make_uploader(buf, proxy.url, central.key)
    proxy.set("refuse", count=1)
    res = up.run_round()
    assert res.error.startswith("connection reset by 127.0.0.1:") and res.next_attempt_at > time.monotonic()
    assert up.run_round().readings == total
    assert central.seqs() == list(range(1, total + 1))


def test_413_splits_until_batches_fit(buf, make_central, tmp_path):
    central = make_central(max_body=1500)
    total = fill(buf, 400)
    up = make_uploader(buf, central.url, central.key, live_readings=2000, max_batch_readings=2000)
    results = drain(up)
    assert results[-1].backlog_empty and all(r.error is None for r in results)
    assert sum(r.splits for r in results) >= 1
    assert central.seqs() == list(range(1, total + 1))


def test_single_reading_too_large_is_dead_lettered_and_the_queue_goes_on(buf, central, proxy):
    total = fill(buf, 2)
    up = make_uploader(buf, proxy.url, central.key, live_readings=10, max_batch_readings=10)
    proxy.set("status", count=4, status=413, body={"error": "too_large", "message": "body too large"},
              sign_key=central.key)  # the central's own refusal, with its receipt
    res = up.run_round()  # 10 -> 5 -> 2 -> 1 reading, still too large: dead-lettered, the rest goes on
    assert res.splits == 4 and res.dead_lettered_readings == 1 and res.backlog_empty
    assert "413 too_large" in res.error
    assert res.readings == total - 1
    assert central.seqs() == list(range(1, total))  # the newest reading was the one refused
    assert buf.stats().readings == 0
    up.run_round()
    assert [g.reason for g in central.store.gaps(NODE)] == ["rejected"]


def test_an_unsigned_413_shrinks_batches_but_never_dead_letters(buf, make_central):
    central = make_central(max_body=200)  # refused before any signature is checked: unsigned
    total = fill(buf, 2)
    up = make_uploader(buf, central.url, central.key, live_readings=10, max_batch_readings=10)
    res = up.run_round()
    assert res.splits >= 3 and res.dead_lettered_readings == 0 and not res.backlog_empty
    assert res.error.startswith("HTTP 413") and res.next_attempt_at > time.monotonic()
    assert central.seqs() == [] and buf.stats().readings == total and buf.stats().claimed == 0


def test_a_reading_the_central_refuses_is_found_by_bisection_and_only_it_becomes_a_gap(buf, central):
    """A real poison: a channel name longer than the protocol allows; the real central 422s it."""
    from node.model import Sample, Stamp

    total = fill(buf, 40)
    now = int(time.time() * 1000)
    buf.put([Sample("x" * 300 + ".temperature_c", 1.0)], Stamp(now, 900_000, "boot-a", True))
    total += fill(buf, 40, start=40)
    up = make_uploader(buf, central.url, central.key, live_readings=50, max_batch_readings=100)
    results = drain(up)
    assert results[-1].backlog_empty and sum(r.dead_lettered_readings for r in results) == 1
    poison = 40 * 5 + 1
    assert central.seqs() == [s for s in range(1, total + 2) if s != poison]
    up.run_round()  # the gap and the incident ride the next batch
    assert [(g.first_seq, g.last_seq, g.reason) for g in central.store.gaps(NODE)] == [(poison, poison,
                                                                                        "rejected")]
    incidents = central.store.incidents(NODE)
    assert [i.kind for i in incidents] == ["batch_rejected"] and "channels[" in incidents[0].detail


def test_stale_clock_is_corrected_from_the_central_and_re_signed(buf, central):
    total = fill(buf, 20)
    offsets = []
    skew = 3600.0  # the node's clock is an hour behind (no RTC, no NTP yet)
    up = make_uploader(buf, central.url, central.key, clock=lambda: time.time() - skew,
                       on_clock_offset=offsets.append)
    res = up.run_round()
    assert res.error is None and res.readings == total and res.attempts == 2
    assert abs(up.clock_offset_ms - skew * 1000) < 2000
    assert len(offsets) == 1 and abs(offsets[0] - up.clock_offset_ms) < 1000  # reported once
    fill(buf, 1, start=20)
    res = up.run_round()  # signed with the offset from now on: one attempt
    assert res.attempts == 1 and res.error is None
    assert central.seqs() == list(range(1, total + 5 + 1))


def test_unknown_node_is_an_auth_failure_and_keeps_the_data(buf, central):
    total = fill(buf, 10)
    up = Uploader(buf, central.url, central.key, "hn-not-registered", rng=lambda: 0.5)
    res = up.run_round()
    assert res.error == "auth failed: HTTP 401 unknown_node (unsigned)"
    assert res.next_attempt_at > time.monotonic()
    assert up.status()["auth_failed"] is True
    assert buf.stats().readings == total and buf.stats().claimed == 0


def test_wrong_key_is_an_auth_failure(buf, central):
    fill(buf, 3)
    up = make_uploader(buf, central.url, b"\x00" * 32)
    assert up.run_round().error == "auth failed: HTTP 401 bad_signature (unsigned)"
    assert central.seqs() == []


def test_byte_bound_claims_fewer_readings(buf, central, proxy):
    total = fill(buf, 1000)
    up = make_uploader(buf, proxy.url, central.key, max_batch_bytes=1024, max_batch_readings=5000,
                       live_readings=5000)
    results = drain(up)
    assert results[-1].backlog_empty and sum(r.splits for r in results) >= 1
    assert all(len(b) <= 1024 for b in proxy.bodies())
    assert central.seqs() == list(range(1, total + 1))


def test_deadline_stops_the_backfill_after_the_live_batch(buf, central):
    total = fill(buf, 100)
    up = make_uploader(buf, central.url, central.key, live_readings=50, max_batch_readings=100)
    res = up.run_round(deadline=time.monotonic() - 1)
    assert (res.readings, res.live_readings, res.backlog_empty) == (50, 50, False)
    assert up.ready()
    assert up.run_round().readings == total - 50


def test_alert_round_marks_the_live_batch(buf, central, proxy):
    fill(buf, 30)
    up = make_uploader(buf, proxy.url, central.key, live_readings=20, max_batch_readings=100,
                       health=lambda: {"firmware": "0.1.0"})
    res = up.run_round(alert=True)
    assert res.alert and res.backlog_empty
    healths = [b.health for b in decoded(proxy)]
    assert healths[0] == {"firmware": "0.1.0", "alert": True}
    assert all("alert" not in h for h in healths[1:])


def test_bytes_counted_match_the_bytes_on_the_wire(buf, central, proxy):
    fill(buf, 200)
    up = make_uploader(buf, proxy.url, central.key, live_readings=100, max_batch_readings=300)
    drain(up)
    st = up.status()
    assert st["requests"] == proxy.counts["requests"] >= 4
    assert st["bytes_sent"] == proxy.bytes_up
    assert st["bytes_received"] == proxy.bytes_down


def test_tls_verification_is_never_off_and_plain_http_only_on_loopback(buf):
    up = Uploader(buf, "https://central.example.org", b"k" * 32, NODE, ca_bundle="/etc/streetnode/ca.pem")
    assert up.verify == "/etc/streetnode/ca.pem" and up.url == "https://central.example.org/v1/ingest"
    assert Uploader(buf, "https://central.example.org/", b"k", NODE).verify is True
    with pytest.raises(ValueError, match="central.url: plain http:// is only allowed to a loopback host"):
        Uploader(buf, "http://central.example.org", b"k", NODE)
    with pytest.raises(ValueError, match="upload.live_readings"):
        Uploader(buf, "http://127.0.0.1:1", b"k", NODE, live_readings=0)


def test_chaos_every_fault_then_every_reading_exactly_once(buf, central, proxy):
    up = make_uploader(buf, proxy.url, central.key, live_readings=30, max_batch_readings=120,
                       read_timeout=1.0)
    faults = [("status", {"status": 503, "retry_after": "1"}), ("cut", {}), ("refuse", {}),
              ("delay", {"delay": 2.0}), ("status", {"status": 429}), ("cut", {}), ("blackhole", {})]
    total = 0
    for i, (mode, params) in enumerate(faults):
        total += fill(buf, 40, start=i * 40)
        proxy.set(mode, count=1, **params)
        up.run_round()
        up.run_round()
    results = drain(up)
    assert results[-1].backlog_empty
    time.sleep(1.5)  # let the delayed request's late answer finish
    assert central.seqs() == list(range(1, total + 1))
    assert buf.stats().readings == 0


def test_failure_mid_backfill_releases_the_prefetched_batch(buf, central, proxy):
    total = fill(buf, 200)  # live 100 + backfill batches of 300
    up = make_uploader(buf, proxy.url, central.key, live_readings=100, max_batch_readings=300)
    proxy.set("pass", count=2)
    proxy.set("status", count=1, status=503)  # the second backfill batch, while the third is claimed
    res = up.run_round()
    assert res.error.startswith("HTTP 503") and res.readings == 400
    assert buf.stats().claimed == 0 and buf.stats().readings == total - 400
    res = up.run_round()
    assert res.backlog_empty and res.readings == total - 400
    assert central.seqs() == list(range(1, total + 1))


def test_request_headers_are_lean(buf, central, proxy):
    fill(buf, 1)
    up = make_uploader(buf, proxy.url, central.key)
    up.run_round()
    head = proxy.recorded[0].split(b"\r\n\r\n", 1)[0].decode().lower()
    assert "user-agent:" not in head and "accept: */*" not in head and "connection:" not in head
    assert "accept-encoding:" not in head  # #22: only what the protocol needs
    assert "content-encoding: gzip" in head and "x-streetnode-signature:" in head


def test_a_successful_round_clears_the_backoff(buf, central, proxy):
    fill(buf, 5)
    up = make_uploader(buf, proxy.url, central.key, backoff_initial=50, rng=lambda: 1.0)
    proxy.set("status", count=1, status=502)
    up.run_round()
    assert not up.ready()
    fill(buf, 5, start=5)
    assert up.run_round().error is None  # the agent may force a round (e.g. a storm alert)
    assert up.ready() and up.status()["consecutive_failures"] == 0


def test_a_failing_health_snapshot_or_clock_hook_never_holds_readings_back(buf, central):
    total = fill(buf, 5)

    def broken_health():
        raise OSError("vcgencmd not found")

    def broken_hook(offset_ms):
        raise RuntimeError("agent bug")

    up = make_uploader(buf, central.url, central.key, health=broken_health, on_clock_offset=broken_hook,
                       clock=lambda: time.time() - 900)
    res = up.run_round()
    assert res.error is None and res.readings == total
    assert central.seqs() == list(range(1, total + 1))


def test_a_wall_clock_step_back_does_not_stall_the_backoff(buf, central, proxy):
    """Backoff runs on a monotonic timer: NTP stepping the wall clock back an hour changes nothing."""
    total = fill(buf, 5)
    wall, mono = [time.time()], [100.0]
    up = make_uploader(buf, proxy.url, central.key, backoff_initial=5, rng=lambda: 1.0,
                       clock=lambda: wall[0], timer=lambda: mono[0])
    proxy.set("status", count=1, status=503)
    res = up.run_round()
    assert res.error.startswith("HTTP 503") and res.next_attempt_at == 105.0
    assert not up.ready()
    wall[0] -= 3600  # the wall clock is stepped back an hour
    mono[0] += 5.01  # ... while the backoff's 5 s pass
    assert up.ready()
    res = up.run_round()  # signed an hour behind: the central's time is learned, then it goes through
    assert res.error is None and res.backlog_empty and central.seqs() == list(range(1, total + 1))
