"""The drain benchmark's parts: the synthetic backlog and the TLS byte count (timings stay in bench/)."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

from bench import backlog, tls_cost
from node import protocol
from node.model import Batch, Reading, unit_of


def test_backlog_is_deterministic_and_on_each_channel_resolution():
    a = list(itertools.islice(backlog.cycles(3000, seed=3), 50))
    b = list(itertools.islice(backlog.cycles(3000, seed=3), 50))
    assert a == b
    for _, samples in a:
        for s in samples:
            res = unit_of(s.channel)[1]
            assert abs(s.value / res - round(s.value / res)) < 1e-6, s
    assert backlog.readings_per_day() == 93_600
    assert 600_000 < 7 * backlog.readings_per_day() < 700_000


def test_backlog_produces_the_asked_number_of_readings_in_cycles():
    cycles = list(backlog.cycles(1000))
    n = sum(len(s) for _, s in cycles)
    assert 1000 <= n < 1000 + 15
    walls = [st.wall_ms for st, _ in cycles]
    assert walls == sorted(walls) and all(9_000 < b - a < 11_000 for a, b in itertools.pairwise(walls))


def test_backlog_compresses_like_sensor_data_not_like_noise():
    readings, seq = [], 1
    for st, samples in backlog.cycles(5000):
        for s in samples:
            readings.append(Reading(seq, s.channel, s.value, 0, st.wall_ms, st.boot_ms, st.boot_id))
            seq += 1
    body = protocol.encode_batch(Batch(1, "n1", 1, readings), health={}, sent_ms=0)
    assert 0.2 < len(body) / len(readings) < 3.0  # realistic: neither constant nor random


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make certificates")
def test_tls_cost_counts_a_real_handshake_and_records():
    cost = tls_cost.measure(1000, 300)
    assert cost is not None
    assert cost.handshake_down > 800  # two ECDSA certificates travel server -> client
    assert 200 < cost.handshake_up < 2000  # ClientHello + Finished
    assert 1000 < cost.request_up < 1100 and 300 < cost.response_down < 400  # records + AEAD tags
    assert cost.ip_total() > cost.tls_total > cost.ip_reused() > 1300


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("STREETNODE_SLOW") != "1", reason="set STREETNODE_SLOW=1")
def test_quick_drain_bench_runs_end_to_end():
    from bench import drain

    rows = drain.run(quick=True)
    by = {r["metric"].split(" (")[0]: r for r in rows}
    assert by["wire bytes per reading during drain"]["value"] < 2
    assert all(r["value"] > 0 for r in rows)


def test_a_shaped_relay_delays_by_the_round_trip_and_paces_by_the_rate_without_changing_a_byte():
    import socket
    import threading
    import time

    from bench.countproxy import CountingProxy, Link

    echo = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = echo.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    payload = os.urandom(5000)  # 0.1 s on a 400 kbit/s uplink
    link = Link(rtt_s=0.2, up_bps=400_000, down_bps=10_000_000)
    with CountingProxy(echo.getsockname()[1], link=link) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += s.recv(65536)
        elapsed = time.monotonic() - t0
    echo.close()
    assert got == payload
    # up: 0.1 s on the line + 0.1 s; down: 4 ms on the line + 0.1 s (a floor: never faster)
    assert elapsed >= 0.2 + 0.1
    assert proxy.counts.up == proxy.counts.down == len(payload)
    assert link.describe() == "RTT 200 ms, 0.4 Mbit/s up, 10 Mbit/s down"
