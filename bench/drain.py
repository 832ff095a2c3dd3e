"""Drain a 7-day backlog from a real SqliteBuffer to the real receiver over loopback HTTP.

    python -m bench.drain            # ~655,000 readings (7 days of the example node)
    python -m bench.drain --quick    # 60,000 readings

Measured in one run, on the same data:
- the receiver storage's raw insert rate (`Store.ingest` of the batches as the receiver holds
  them once decoded: rows and units; no HTTP, no gzip, no JSON, no signature) — the baseline
  of the drain rate;
- the drain: `Uploader.run_round` until the backlog is empty, end to end
  (claim, encode, sign, POST, decode, verify, store, ack), readings/s, and the
  bytes on the wire per reading (request line + headers + gzip body); what the city sees of it:
  how long until the newest readings (the live batch, sent first) and the whole backlog are
  stored at the central once the uplink is back;
- gzip of plain JSON rows (one object per reading) — the baseline of the layout;
- steady state: 30 s of readings per round, the HTTP bytes of a round both ways,
  plus TLS 1.3 and TCP/IP measured/estimated by `bench.tls_cost` for a fresh
  connection per upload (uvicorn's keep-alive is 5 s, cellular NATs drop idle
  flows), times 2880 rounds a day.
Every reading is checked to be stored exactly once. Full runs alternate the raw insert and the
drain three times and report medians of each (requests/s too), so a busy moment on a shared
machine hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import itertools
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import backlog, tls_cost
from bench.countproxy import CountingProxy, Link
from central.store import open_store
from node import protocol
from node.buffer import SqliteBuffer
from node.model import Batch, Reading
from node.protocol import IngestBatch
from node.uploader import Uploader

NODE = "hn-bench-0001"
FULL_READINGS = 7 * backlog.readings_per_day()
QUICK_READINGS = 60_000
BATCH = 5000
REPEATS = 3  # full runs: raw insert and drain alternate, medians reported
ROUND_S = 30
# a modest cellular uplink (4G with a weak signal): what a pole's drain meets in the street
CELLULAR = Link(rtt_s=0.1, up_bps=2e6, down_bps=10e6)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _readings(n: int) -> list[Reading]:
    out: list[Reading] = []
    seq = 1
    for stamp, samples in backlog.cycles(n):
        for s in samples:
            out.append(Reading(seq, s.channel, s.value, s.flags, stamp.wall_ms, stamp.boot_ms, stamp.boot_id))
            seq += 1
    return out


def _buffer_clock() -> float:
    return backlog.START_MS / 1000 + 8 * 86400


def _fill_buffer(path: Path, n: int) -> None:
    """Write the backlog into a real SqliteBuffer at ``path`` (then closed, ready to copy)."""
    buf = SqliteBuffer(path, NODE, clock=_buffer_clock)
    buf.open()
    for stamp, samples in backlog.cycles(n):
        buf.put(samples, stamp)
    buf.close()


def _copy_buffer(template: Path, path: Path) -> SqliteBuffer:
    for suffix in ("", "-wal", "-shm", ".epoch"):
        src = Path(f"{template}{suffix}")
        if src.exists():
            shutil.copyfile(src, f"{path}{suffix}")
    buf = SqliteBuffer(path, NODE, clock=_buffer_clock)
    buf.open()
    return buf


def _decoded_batches(readings: list[Reading]) -> list[IngestBatch]:
    """The backlog in 5000-reading batches as the receiver holds them once decoded (rows, units)."""
    return [protocol.decode_body(protocol.encode_batch(Batch(i, NODE, 1, readings[i:i + BATCH]), health={},
                                                       sent_ms=0), max_decompressed=1 << 26)
            for i in range(0, len(readings), BATCH)]


def _raw_insert_rate(db_url: str, batches: list[IngestBatch]) -> float:
    """`Store.ingest` of the decoded batches: all the store does for a drain, and nothing else."""
    store = open_store(db_url)
    try:
        store.add_node(NODE, secrets.token_bytes(32), 0)
        t0 = time.perf_counter()
        for batch in batches:
            store.ingest(batch, signature=secrets.token_hex(32), expires_ms=10**13, now_ms=0)
        elapsed = time.perf_counter() - t0
        n = sum(map(len, batches))
        assert store.count_readings(NODE) == n
        return n / elapsed
    finally:
        store.close()


def _plain_json_gzip_per_reading(readings: list[Reading]) -> float:
    total = 0
    for i in range(0, len(readings), BATCH):
        rows = [{"seq": r.seq, "channel": r.channel, "value": r.value, "flags": r.flags,
                 "wall_ms": r.wall_ms, "boot_ms": r.boot_ms, "boot_id": r.boot_id}
                for r in readings[i:i + BATCH]]
        total += len(gzip.compress(json.dumps(rows, separators=(",", ":")).encode(), 6))
    return total / len(readings)


def _drain(db_url: str, buf: SqliteBuffer, n: int, receiver, link: Link | None = None) -> dict[str, float]:
    """Drain ``buf`` into a receiver on ``db_url``, straight or through a relay shaped as ``link``."""
    key = secrets.token_bytes(32)
    with contextlib.ExitStack() as stack:
        url, store = stack.enter_context(receiver(db_url, {NODE: key}))
        if link is not None:
            proxy = stack.enter_context(CountingProxy(int(url.rsplit(":", 1)[1]), link=link))
            url = f"http://127.0.0.1:{proxy.port}"
        up = Uploader(buf, url, key, NODE, max_batch_readings=BATCH)
        t0 = time.perf_counter()
        # the first round with its deadline already passed sends the live batch alone (newest
        # first): when it returns, the operator's "now" is at the central
        first = up.run_round(deadline=float("-inf"))
        live_s = time.perf_counter() - t0
        if first.error or not first.live_readings:
            raise RuntimeError(f"live batch not acknowledged: {first.error}")
        newest = max(store.seqs(NODE, buf.epoch))
        sent_bytes, attempts = first.bytes_sent, first.attempts
        for _ in range(10_000):
            res = up.run_round()
            sent_bytes += res.bytes_sent
            attempts += res.attempts
            if res.error:
                raise RuntimeError(f"drain failed: {res.error}")
            if res.backlog_empty:
                break
        elapsed = time.perf_counter() - t0
        status = up.status()
        up.close()
        stored = store.count_readings(NODE)
        seqs = store.seqs(NODE, buf.epoch)
    if stored != n or len(seqs) != n or len(set(seqs)) != n:
        raise RuntimeError(f"drain stored {stored} of {n} readings")
    if newest != max(seqs):
        raise RuntimeError(f"the live batch's newest seq {newest} is not the backlog's newest {max(seqs)}")
    return {"rate": n / elapsed, "wire": sent_bytes / n, "requests": attempts,
            "received": status["bytes_received"] / n, "live_s": live_s, "live": first.live_readings}


def _ceilings(db_url: str, buf: SqliteBuffer, receiver) -> tuple[float, float]:
    """The two halves of the drain alone, readings/s: the node's claim + encode + ack with no network,
    and the receiver taking pre-encoded, pre-signed bodies posted back to back."""
    key = secrets.token_bytes(32)
    bodies = []
    t0 = time.perf_counter()
    while (batch := buf.claim(BATCH)) is not None:
        bodies.append((len(batch.readings), protocol.encode_batch(batch, health={}, sent_ms=1)))
        buf.ack(batch.id)
    node_rate = sum(n for n, _ in bodies) / (time.perf_counter() - t0)
    with receiver(db_url, {NODE: key}) as (url, _store), requests.Session() as session:
        signed = []
        for n, body in bodies:
            headers = dict(protocol.BODY_HEADERS)
            headers.update(protocol.sign_request(key, "POST", protocol.INGEST_PATH, body,
                                                 int(time.time() * 1000) + len(signed), node_id=NODE))
            signed.append((n, body, headers))
        t0 = time.perf_counter()
        for _, body, headers in signed:
            r = session.post(url + protocol.INGEST_PATH, data=body, headers=headers, timeout=(5, 60))
            if r.status_code != 200:
                raise RuntimeError(f"receiver ceiling: HTTP {r.status_code} {r.text[:200]}")
        return node_rate, sum(n for n, _, _ in signed) / (time.perf_counter() - t0)


def _steady_state(db_url: str, tmp: Path, receiver, rounds: int) -> dict[str, float]:
    """HTTP bytes per 30 s round with 30 s of fresh readings, averaged over ``rounds`` rounds."""
    key = secrets.token_bytes(32)
    per_round = backlog.readings_per_day() * ROUND_S // 86400
    cyc = backlog.cycles(per_round * rounds + 100, start_ms=backlog.START_MS + 30 * 86400_000)
    buf = SqliteBuffer(tmp / "steady.db", NODE)
    buf.open()
    up_bytes = down_bytes = readings = 0
    with receiver(db_url, {NODE: key}) as (url, _store):
        up = Uploader(buf, url, key, NODE, health=lambda: {"backlog_readings": 0, "firmware": "0.1.0"})
        for _ in range(rounds):
            for stamp, samples in itertools.islice(cyc, ROUND_S // backlog.CYCLE_S):
                buf.put(samples, stamp)
            res = up.run_round()
            if res.error or not res.backlog_empty:
                raise RuntimeError(f"steady-state round failed: {res.error}")
            up_bytes += res.bytes_sent
            down_bytes += res.bytes_received
            readings += res.readings
        up.close()
    buf.close()
    return {"up": up_bytes / rounds, "down": down_bytes / rounds, "readings": readings / rounds}


def _row(metric: str, value: float, unit: str, baseline: str = "", baseline_value: float | None = None,
         goal: str = "", ratio: float | None = None) -> dict:
    if ratio is None and baseline_value:
        ratio = value / baseline_value
    return {"metric": metric, "value": round(value, 3), "unit": unit, "baseline": baseline,
            "baseline_value": None if baseline_value is None else round(baseline_value, 3),
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal}


def _pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=2):
            return True
    except Exception:
        return False


def run(quick: bool = False) -> list[dict]:
    from bench.receiver import receiver

    n = QUICK_READINGS if quick else FULL_READINGS
    reps = 1 if quick else REPEATS
    rows: list[dict] = []
    readings = _readings(n)
    n = len(readings)
    decoded = _decoded_batches(readings)
    # The bench's own copy of the backlog (n Reading objects) is not part of either side: keep
    # it out of the cyclic collector's sight, or every full collection during the raw insert and
    # the drain (the node side runs in this process) walks it. A real node holds no such list.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="streetnode-drain-") as tmp_s:
        tmp = Path(tmp_s)
        backends = [("sqlite", lambda tag: f"sqlite:///{tmp}/central-{tag}.db")]
        if _pg_reachable():
            backends.append(("postgresql", lambda tag: _pg_schema_url(tag)))
        template = tmp / "buffer-template.db"
        _fill_buffer(template, n)
        for name, db_url in backends:
            raws, drains = [], []
            for r in range(reps):  # alternate, so a busy moment on a shared machine hits both alike
                raws.append(_raw_insert_rate(db_url(f"raw{r}"), decoded))
                buf = _copy_buffer(template, tmp / f"buffer-{name}-{r}.db")
                drains.append(_drain(db_url(f"drain{r}"), buf, n, receiver))
                buf.close()
            raw = statistics.median(raws)
            d = {k: statistics.median(x[k] for x in drains) for k in drains[0]}
            med = f", median of {reps}" if reps > 1 else ""
            rows.append(_row(f"drain rate ({name}, {n} readings{med})", d["rate"], "readings/s",
                             f"raw {name} Store.ingest{med}", raw, "≥ 0.8× (#22)"))
            rows.append(_row(f"drain requests/s ({name}, {BATCH}-reading batches)",
                             d["requests"] / (n / d["rate"]), "requests/s"))
            rows.append(_row(f"newest {d['live']:.0f} readings stored after the uplink returns ({name})",
                             d["live_s"] * 1000, "ms", goal="≤ 1,000 ms"))
            rows.append(_row(f"whole backlog stored after the uplink returns ({name}, {n} readings)",
                             n / d["rate"], "s", goal="≤ 60 s"))
            if name == "sqlite":
                buf = _copy_buffer(template, tmp / "buffer-ceiling.db")
                node_side, central_side = _ceilings(db_url("ceiling"), buf, receiver)
                buf.close()
                rows.append(_row("drain rate vs the node side alone", d["rate"], "readings/s",
                                 "SqliteBuffer claim + encode + ack, no network", node_side))
                rows.append(_row("drain rate vs the receiver alone", d["rate"], "readings/s",
                                 "pre-encoded bodies posted back to back", central_side))
                plain = _plain_json_gzip_per_reading(readings)
                rows.append(_row("wire bytes per reading during drain", d["wire"], "B/reading",
                                 "gzip plain JSON rows (body only)", plain, "≤ 2 B"))
                rows.append(_row("response bytes per reading during drain", d["received"], "B/reading"))
                buf = _copy_buffer(template, tmp / "buffer-cellular.db")
                c = _drain(db_url("cellular"), buf, n, receiver, CELLULAR)
                buf.close()
                where = f"sqlite, emulated {CELLULAR.describe()}"
                rows.append(_row(f"newest {c['live']:.0f} readings stored after the uplink returns ({where})",
                                 c["live_s"] * 1000, "ms", goal="≤ 1,000 ms"))
                rows.append(_row(f"whole backlog stored after the uplink returns ({where}, {n} readings)",
                                 n / c["rate"], "s", "the same over loopback", n / d["rate"], "≤ 60 s"))
        rounds = 20 if quick else 120
        s = _steady_state(backends[0][1]("steady"), tmp, receiver, rounds)
    gc.unfreeze()
    _drop_pg_schemas()
    tls = tls_cost.measure(int(s["up"]), int(s["down"]))
    http_day = (s["up"] + s["down"]) * 86400 / ROUND_S
    rows.append(_row(f"steady state HTTP bytes per {ROUND_S} s round ({s['readings']:.1f} readings)",
                     s["up"] + s["down"], "B/round"))
    rows.append(_row("steady state HTTP bytes per day (both ways)", http_day, "B/day"))
    if tls is not None:
        per_round = tls.ip_total()
        rows.append(_row("TLS 1.3 handshake per new connection (both ways)",
                         tls.handshake_up + tls.handshake_down, "B"))
        rows.append(_row("steady state bytes per day incl. TLS + TCP/IP (new connection each round)",
                         per_round * 86400 / ROUND_S, "B/day", "HTTP payload only", http_day, "report"))
        rows.append(_row("steady state bytes per day incl. TLS + TCP/IP (connection kept alive)",
                         tls.ip_reused() * 86400 / ROUND_S, "B/day", "HTTP payload only", http_day,
                         "report"))
    return rows


def _pg_schema_url(tag: str) -> str:
    import psycopg

    schema = f"bench_drain_{os.getpid()}_{tag}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{PG_URL}?schema={schema}"


def _drop_pg_schemas() -> None:
    """Drop this run's schemas (and those of earlier runs whose process is gone)."""
    if not _pg_reachable():
        return
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace"
                                            " WHERE nspname LIKE 'bench_drain_%'")]
        for name in names:
            pid = name.split("_")[2]
            if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _print(rows: list[dict]) -> None:
    cols = ["metric", "value", "unit", "baseline", "baseline_value", "ratio", "goal"]
    widths = {c: max(len(c), *(len(str(r[c] if r[c] is not None else "")) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c] if r[c] is not None else "").ljust(widths[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_READINGS} readings instead of 7 days")
    args = p.parse_args(argv)
    _print(run(quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
