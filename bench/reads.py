"""Reads against uploads (#13, old #11, item 3): the receiver as shipped (its own process, SQLite),
one node holding many readings.

- valid upload latency (33 readings, signed) while 40 clients read as fast as they can
  (``GET /v1/nodes`` and 1000-reading pages of that node), beside the same uploads on an idle
  receiver in the same run; goal ≤ 2× (before: > 30 s, the node's timeout, with 11 M readings);
- ``GET /v1/nodes`` latency, beside the ``COUNT(*)`` over the readings each call used to make.

    python -m bench reads [--quick]
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time

import requests

from bench.ingest_rate import synthetic
from bench.receiver import receiver
from central.accounts import Accounts
from node import protocol
from node.model import Batch

BIG = "bench-big"
UPLOADER = "bench-up"
READERS = 40
UPLOADS = 20


def _fill(store, n: int) -> None:
    readings = synthetic(n)
    for i in range(0, n, 5000):
        batch = protocol.IngestBatch(BIG, 1, 0, readings[i:i + 5000])
        store.ingest(batch, signature=secrets.token_hex(32), expires_ms=0, now_ms=0)


def _upload_latencies(url: str, key: bytes, start_seq: int) -> list[float]:
    session = requests.Session()
    out = []
    for k in range(UPLOADS):
        cycle = synthetic(33, seed=k)
        chunk = [dataclasses.replace(r, seq=start_seq + k * 33 + i) for i, r in enumerate(cycle)]
        body = protocol.encode_batch(Batch(k, UPLOADER, 1, chunk), health={"backlog_readings": 0}, sent_ms=0)
        headers = {**protocol.BODY_HEADERS, **protocol.sign_request(
            key, "POST", protocol.INGEST_PATH, body, int(time.time() * 1000), node_id=UPLOADER)}
        t = time.perf_counter()
        r = session.post(url + protocol.INGEST_PATH, data=body, headers=headers, timeout=60)
        out.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise RuntimeError(f"upload refused: {r.status_code} {r.text[:200]}")
        time.sleep(0.05)
    return out


def _reader(url: str, auth: dict[str, str], stop: threading.Event, counts: list[int]) -> None:
    session = requests.Session()
    cursor = None
    while not stop.is_set():
        session.get(url + "/v1/nodes", headers=auth, timeout=60)
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = session.get(f"{url}/v1/nodes/{BIG}/readings", headers=auth, params=params, timeout=60)
        cursor = r.json().get("next") if r.status_code == 200 else None
        counts.append(r.status_code)


def run(quick: bool = False) -> list[dict]:
    n = 200_000 if quick else 2_000_000
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="streetnode-reads-") as tmp:
        db = f"{tmp}/central.db"
        with receiver(f"sqlite:///{db}", {BIG: secrets.token_bytes(32), UPLOADER: key}) as (url, store):
            _fill(store, n)
            auth = {"Authorization": f"Bearer {Accounts(store).add_token('bench', 'read')}"}
            idle = _upload_latencies(url, key, 0)
            stop, counts = threading.Event(), []
            readers = [threading.Thread(target=_reader, args=(url, auth, stop, counts), daemon=True)
                       for _ in range(READERS)]
            for t in readers:
                t.start()
            time.sleep(1.0)
            try:
                loaded = _upload_latencies(url, key, 10_000)
            finally:
                stop.set()
                for t in readers:
                    t.join(60)
            session = requests.Session()
            nodes_s = []
            for _ in range(10):
                t = time.perf_counter()
                session.get(url + "/v1/nodes", headers=auth, timeout=60).raise_for_status()
                nodes_s.append(time.perf_counter() - t)
        conn = sqlite3.connect(db)
        count_s = []
        for _ in range(3):
            t = time.perf_counter()
            conn.execute("SELECT COUNT(*) FROM readings WHERE node_id = ?", (BIG,)).fetchone()
            count_s.append(time.perf_counter() - t)
        conn.close()
    idle_ms, loaded_ms = statistics.median(idle) * 1000, statistics.median(loaded) * 1000
    nodes_ms, count_ms = statistics.median(nodes_s) * 1000, statistics.median(count_s) * 1000
    ok = sum(1 for c in counts if c == 200)
    return [
        {"metric": f"valid upload latency, median, while {READERS} clients read ({n:,} readings stored, "
                   f"{ok} reads answered)", "value": loaded_ms, "unit": "ms",
         "baseline": "the same uploads, receiver idle", "baseline_value": idle_ms,
         "ratio": loaded_ms / idle_ms, "goal": "≤ 2×"},
        {"metric": f"valid upload latency, max of {UPLOADS}, while {READERS} clients read",
         "value": max(loaded) * 1000, "unit": "ms", "baseline": "the same uploads, receiver idle",
         "baseline_value": max(idle) * 1000, "ratio": max(loaded) / max(idle),
         "goal": "< 30 s (node timeout)"},
        {"metric": f"GET /v1/nodes latency ({n:,} readings stored)", "value": nodes_ms, "unit": "ms",
         "baseline": "COUNT(*) of the node's readings (what each call did)", "baseline_value": count_ms,
         "ratio": nodes_ms / count_ms, "goal": "independent of readings stored"},
    ]
