"""The receiver alone: signed gzip batches POSTed to `streetnode-central serve` (a separate process).

    python -m bench.ingest_rate [--readings N] [--db sqlite|postgresql]

Measured in one run on the same synthetic 15-channel, 10 s-cycle data (5000-reading batches):
- baseline: `Store.ingest` of already-decoded batches (no HTTP, gzip, JSON or signature);
- `decode_body` alone (gunzip + JSON + validation), readings/s;
- the receiver end to end over loopback HTTP, client in another process, readings/s and ratio;
- wire bytes per reading (gzip body) vs gzip of plain JSON rows.

``run(quick)`` (part of ``python -m bench``) measures the receiver's requests/s instead: many
nodes' steady-state uploads (30 s of readings, 33 per request), pre-signed, POSTed back to back
over one keep-alive connection to `streetnode-central serve` in its own process, beside
`Store.ingest` of the same decoded batches in this process (no HTTP, gzip, JSON or signature).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import secrets
import sys
import tempfile
import time
import urllib.parse
import uuid

import requests

from bench.receiver import start_central, stop_central
from central.store import open_store
from node import protocol
from node.model import Batch, Reading

NODE = "bench-1"
BATCH = 5000
CHANNELS = {  # quantity -> (start, step sigma, resolution decimals)
    "weather.temperature_c": (28.0, 0.02, 2), "weather.humidity_pct": (80.0, 0.05, 2),
    "weather.pressure_hpa": (1005.0, 0.02, 2), "air.pm1_0_ugm3": (25.0, 1.0, 0),
    "air.pm2_5_ugm3": (35.0, 1.0, 0), "air.pm10_ugm3": (45.0, 1.5, 0), "flood.depth_cm": (0.0, 0.0, 1),
    "flood.distance_cm": (300.0, 0.3, 1), "rain.rain_mm": (0.0, 0.0, 4), "rain.rain_rate_mm_h": (0.0, 0.0, 2),
    "health.cpu_temp_c": (50.0, 0.3, 1), "health.disk_used_pct": (12.3, 0.0, 1),
    "health.load_1m": (0.3, 0.03, 2), "health.uptime_s": (0.0, 0.0, 0), "health.throttled": (0.0, 0.0, 0),
}


def synthetic(n: int, seed: int = 1) -> list[Reading]:
    rng = random.Random(seed)
    state = {k: v[0] for k, v in CHANNELS.items()}
    out: list[Reading] = []
    wall, boot, seq = 1_764_100_000_000, 60_000, 0
    while len(out) < n:
        wall += 10_000 + rng.randint(-3, 3)
        boot += 10_000
        for name, (_, sigma, dec) in CHANNELS.items():
            state[name] += rng.gauss(0, sigma)
            if name == "health.uptime_s":
                state[name] = boot // 1000
            out.append(Reading(seq, name, round(state[name], dec), 0, wall, boot, "boot-0"))
            seq += 1
    return out[:n]


STEADY_READINGS = 33  # one 30 s upload of the example node
STEADY_NODES = 50


def _steady_bodies(n_requests: int) -> list[tuple[str, bytes]]:
    """(node id, body) of ``n_requests`` steady-state uploads, round robin over STEADY_NODES nodes."""
    readings = synthetic(n_requests // STEADY_NODES * STEADY_READINGS + STEADY_READINGS * 2)
    out = []
    for i in range(n_requests):
        node, k = f"bench-{i % STEADY_NODES:03d}", i // STEADY_NODES
        chunk = readings[k * STEADY_READINGS:(k + 1) * STEADY_READINGS]
        out.append((node, protocol.encode_batch(Batch(k, node, 1, chunk),
                                                health={"backlog_readings": 0, "firmware": "0.1.0"},
                                                sent_ms=0)))
    return out


def run(quick: bool = False) -> list[dict]:
    """Receiver requests/s for steady-state uploads, beside raw `Store.ingest` calls/s."""
    from bench.receiver import receiver

    n = 300 if quick else 3000
    bodies = _steady_bodies(n)
    keys = {f"bench-{i:03d}": secrets.token_bytes(32) for i in range(STEADY_NODES)}
    with tempfile.TemporaryDirectory(prefix="streetnode-ingest-") as tmp:
        raw = open_store(f"sqlite:///{tmp}/raw.db")
        try:
            for node, key in keys.items():
                raw.add_node(node, key, 0)
            decoded = [protocol.decode_body(b, max_decompressed=1 << 26) for _, b in bodies]
            t = time.perf_counter()
            for d in decoded:
                raw.ingest(d, signature=secrets.token_hex(32), expires_ms=10**13, now_ms=0)
            raw_rate = n / (time.perf_counter() - t)
        finally:
            raw.close()
        with receiver(f"sqlite:///{tmp}/http.db", keys) as (url, store):
            now = int(time.time() * 1000)
            signed = []
            for i, (node, body) in enumerate(bodies):
                sig = protocol.sign_request(keys[node], "POST", protocol.INGEST_PATH, body, now + i,
                                            node_id=node)
                h = {**protocol.BODY_HEADERS, **sig}
                signed.append((body, h))
            u = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            try:
                t = time.perf_counter()
                for body, h in signed:
                    conn.request("POST", protocol.INGEST_PATH, body=body, headers=h)
                    r = conn.getresponse()
                    answer = r.read()
                    if r.status != 200:
                        raise RuntimeError(f"receiver: HTTP {r.status} {answer[:200]!r}")
                http_rate = n / (time.perf_counter() - t)
            finally:
                conn.close()
            stored = store.count_readings()
        if stored != n * STEADY_READINGS:
            raise RuntimeError(f"receiver stored {stored} of {n * STEADY_READINGS} readings")
    return [{"metric": f"receiver requests/s ({STEADY_READINGS}-reading uploads, {STEADY_NODES} nodes, "
                       "one keep-alive client)", "value": round(http_rate, 1), "unit": "requests/s",
             "baseline": "raw sqlite Store.ingest calls/s", "baseline_value": round(raw_rate, 1),
             "ratio": round(http_rate / raw_rate, 3),
             "goal": f"report (≈ {http_rate * 30:,.0f} nodes at one upload per 30 s)"}]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_rate", description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=300_000)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp()
    schema = f"bench_{uuid.uuid4().hex[:8]}"

    def url(tag: str) -> str:
        if args.db == "sqlite":
            return f"sqlite:///{os.path.join(tmp, tag + '.db')}"
        return f"postgresql://postgres@127.0.0.1:5432/test?schema={schema}_{tag}"

    readings = synthetic(args.readings)
    chunks = [readings[i:i + BATCH] for i in range(0, len(readings), BATCH)]
    bodies = [protocol.encode_batch(Batch(i, NODE, 1, c), health={"backlog_readings": 0}, sent_ms=0)
              for i, c in enumerate(chunks)]
    key = secrets.token_bytes(32)

    t = time.perf_counter()
    decoded = [protocol.decode_body(b, max_decompressed=1 << 26) for b in bodies]
    decode_rate = len(readings) / (time.perf_counter() - t)

    raw = open_store(url("raw"))
    raw.add_node(NODE, key, 0)
    t = time.perf_counter()
    for d in decoded:
        raw.ingest(d, signature=secrets.token_hex(32), expires_ms=10**13, now_ms=0)
    raw_rate = len(readings) / (time.perf_counter() - t)
    raw.close()

    store = open_store(url("http"))
    store.add_node(NODE, key, 0)
    store.close()
    proc, base = start_central(["serve", "--listen", "127.0.0.1:0", "--db", url("http")])
    try:
        session = requests.Session()
        t = time.perf_counter()
        for body in bodies:
            h = {**protocol.BODY_HEADERS, **protocol.sign_request(key, "POST", protocol.INGEST_PATH, body,
                                                                    int(time.time() * 1000), node_id=NODE)}
            r = session.post(base + protocol.INGEST_PATH, data=body, headers=h, timeout=60)
            r.raise_for_status()
        http_rate = len(readings) / (time.perf_counter() - t)
    finally:
        stop_central(proc, timeout=30)
    store = open_store(url("http"))
    stored = store.count_readings(NODE)
    store.close()
    if stored != len(readings):
        raise RuntimeError(f"stored {stored} of {len(readings)}")
    plain = sum(len(gzip.compress(json.dumps([
        {"seq": r.seq, "channel": r.channel, "value": r.value, "flags": r.flags, "wall_ms": r.wall_ms,
         "boot_ms": r.boot_ms, "boot_id": r.boot_id} for r in c]).encode())) for c in chunks)
    wire = sum(map(len, bodies))
    n = len(readings)
    print(f"{'metric':44} {'value':>12}  ratio vs baseline")
    print(f"{'raw ' + args.db + ' Store.ingest (baseline)':44} {raw_rate:12.0f}  readings/s")
    print(f"{'decode_body':44} {decode_rate:12.0f}  {decode_rate / raw_rate:.2f}x")
    print(f"{'receiver over loopback HTTP (separate process)':44} {http_rate:12.0f}  "
          f"{http_rate / raw_rate:.2f}x  (goal >= 0.5x)")
    print(f"{'gzip body bytes per reading':44} {wire / n:12.3f}  {wire / plain:.2f}x of plain JSON rows "
          f"({plain / n:.2f} B)  (goal <= 2 B)")
    if args.db == "postgresql":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            for tag in ("raw", "http"):
                c.execute(f'DROP SCHEMA IF EXISTS "{schema}_{tag}" CASCADE')
    return 0


if __name__ == "__main__":
    sys.exit(main())
