"""Benchmark of the SD-card buffer (not a test): CPU and bytes written per reading.

A realistic node: 15 channels sampled every 10 s, one `put` per cycle with the
default settings (durable when it returns). The baseline, measured in the same
run on the same disk: the same readings as flat rows with a plain sqlite3
connection (default settings), ``executemany`` 100 rows per transaction.

Bytes written come from ``/proc/self/io`` ``write_bytes`` (what this process
sent towards the block device, counted per 4 KiB page dirtied; checkpoints included, the
``-shm`` index is not: it is never fsynced and the kernel writes it back at most every
``dirty_expire`` interval). The SD rows state them per durable cycle and per node-day
(8640 cycles of 10 s), with and without the acknowledgements of upload rounds. The CPU ratio is
given for every run (min/median/max): the goal is every run ≤ 1.5. Run it on a
disk-backed directory (``STREETNODE_BENCH_DIR``, default /var/tmp): on tmpfs
nothing is counted. ``python -m bench.buffer [--quick]``
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from node.buffer import SqliteBuffer
from node.model import CHANNEL_UNITS, Sample, Stamp

CHANNELS = [
    "weather.temperature_c", "weather.humidity_pct", "weather.pressure_hpa",
    "air.pm1_0_ugm3", "air.pm2_5_ugm3", "air.pm10_ugm3",
    "flood.depth_cm", "flood.distance_cm", "rain.rain_mm", "rain.rain_rate_mm_h",
    "health.cpu_temp_c", "health.disk_used_pct", "health.load_1m", "health.uptime_s", "health.throttled",
]
BASE = [24.0, 80.0, 1008.0, 12.0, 25.0, 40.0, 0.0, 300.0, 0.0, 0.0, 48.0, 20.0, 0.5, 3600.0, 0.0]
INTERVAL_MS = 10_000


def write_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes"):
                return int(line.split()[1])
    return 0


def cycles(n: int) -> list[tuple[list[Sample], Stamp]]:
    """n sampling cycles with plausible values, rounded to each channel's resolution."""
    out = []
    for i in range(n):
        samples = []
        for k, ch in enumerate(CHANNELS):
            res = CHANNEL_UNITS[ch.split(".")[1]][1]
            wobble = ((i * 7919 + k * 104729) % 1000) / 1000 - 0.5
            value = BASE[k] + wobble * (1 + BASE[k] / 20)
            samples.append(Sample(ch, round(round(value / res) * res, 4), 0))
        out.append((samples, Stamp(1_767_225_600_000 + i * INTERVAL_MS, 12_000 + i * INTERVAL_MS,
                                   "3c9a2f1e-8b7d-4e0a-9f12-6d5c4b3a2e1f", True)))
    return out


def measure(fn) -> tuple[float, float, int]:
    """(wall s, cpu s, bytes written) of fn()."""
    w0, c0, t0 = write_bytes(), time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0, write_bytes() - w0


def run_buffer(path: Path, data) -> None:
    buf = SqliteBuffer(path, "bench-node")
    for samples, stamp in data:
        buf.put(samples, stamp)
    buf.close()


def run_baseline(path: Path, data) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE readings(seq INTEGER PRIMARY KEY, channel INTEGER, value REAL, flags INTEGER,"
               " wall_ms INTEGER, boot_ms INTEGER, boot_id TEXT, synced INTEGER)")
    db.commit()
    ids = {ch: i + 1 for i, ch in enumerate(CHANNELS)}
    rows, seq = [], 0
    for samples, st in data:
        for s in samples:
            seq += 1
            rows.append((seq, ids[s.channel], s.value, s.flags, st.wall_ms, st.boot_ms, st.boot_id,
                         st.synced))
            if len(rows) == 100:
                with db:
                    db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?)", rows)
                rows = []
    if rows:
        with db:
            db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?)", rows)
    db.close()


def run_compact_batched(path: Path, data) -> None:
    """Our own layout and settings, but committed every ~100 readings: the price of per-cycle fsync."""
    from node.buffer import packed, store
    from node.buffer.base import encode_value
    from node.model import unit_of

    db = store.connect(path, page_size=store.DEFAULT_PAGE_SIZE, autocheckpoint=1000)
    for stmt in store.SCHEMA.split(";"):
        if stmt.strip():
            db.execute(stmt)
    res = {ch: unit_of(ch)[1] for ch in CHANNELS}
    ids = {ch: i + 1 for i, ch in enumerate(CHANNELS)}
    seq = 1
    db.execute("BEGIN")
    for i, (samples, st) in enumerate(data):
        db.execute("INSERT INTO cycles VALUES (?,?,?,?,?,?,?)",
                   (seq, len(samples), st.wall_ms, st.boot_ms, 1, 0,
                    packed.encode([(ids[s.channel], encode_value(s.value, res[s.channel]), s.flags)
                                   for s in samples])))
        seq += len(samples)
        if i % 7 == 6:  # 105 readings per transaction
            db.execute("COMMIT")
            db.execute("BEGIN")
    db.execute("COMMIT")
    db.close()


def run_steady(path: Path, data, ack_every: int) -> None:
    """Puts with an upload round (claim everything, ack) every ``ack_every`` cycles: what the SD
    card sees on a pole whose central answers (acks delete the oldest rows, pages are reused)."""
    buf = SqliteBuffer(path, "bench-node")
    for i, (samples, stamp) in enumerate(data):
        buf.put(samples, stamp)
        if i % ack_every == ack_every - 1:
            batch = buf.claim(5000)
            if batch is not None:
                buf.ack(batch.id)
    buf.close()


CYCLES_PER_DAY = 86_400_000 // INTERVAL_MS
FLOOR_B = 4096  # one 4 KiB page of the WAL re-dirtied and fsynced per durable commit
ACK_EVERY = {"30 s (upload.interval)": 3, "10 min (calm, lazy)": 60}


def run(quick: bool = False) -> list[dict]:
    n_cycles, rounds = (400, 2) if quick else (4000, 5)
    data = cycles(n_cycles)
    n = n_cycles * len(CHANNELS)
    where = os.environ.get("STREETNODE_BENCH_DIR", "/var/tmp")
    root = Path(tempfile.mkdtemp(prefix="bench-buffer-", dir=where))
    ours: list[tuple[float, float, int, int]] = []
    base: list[tuple[float, float, int, int]] = []
    batched: list[tuple[float, float, int, int]] = []
    steady: dict[str, int] = {}
    try:
        for r in range(rounds):  # alternate, so drift hits both alike
            p = root / f"buffer-{r}.db"
            ours.append((*measure(lambda p=p: run_buffer(p, data)), p.stat().st_size))
            q = root / f"baseline-{r}.db"
            base.append((*measure(lambda q=q: run_baseline(q, data)), q.stat().st_size))
            c = root / f"batched-{r}.db"
            batched.append((*measure(lambda c=c: run_compact_batched(c, data)), c.stat().st_size))
        for label, every in ACK_EVERY.items():
            s = root / f"steady-{every}.db"
            steady[label] = measure(lambda s=s, every=every: run_steady(s, data, every))[2]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(xs, i):
        return statistics.median(x[i] for x in xs)

    b_name = "plain executemany, 100 rows/txn"
    rows = []

    def row(metric, value, unit, baseline_value, goal, lower_is_better=True, baseline=b_name):
        ratio = value / baseline_value if baseline_value else float("nan")
        rows.append({"metric": metric, "value": value, "unit": unit, "baseline": baseline,
                     "baseline_value": baseline_value, "ratio": ratio, "goal": goal,
                     "lower_is_better": lower_is_better})

    cpu_ratios = sorted(o[1] / b[1] for o, b in zip(ours, base, strict=True))
    spread = "/".join(f"{x:.2f}" for x in (cpu_ratios[0], statistics.median(cpu_ratios), cpu_ratios[-1]))
    row("readings per second", n / med(ours, 0), "readings/s", n / med(base, 0), "-", lower_is_better=False)
    row("CPU per reading (median)", med(ours, 1) / n * 1e6, "µs", med(base, 1) / n * 1e6,
        f"ratio ≤ 1.5 in every run; min/median/max of {rounds} runs {spread}")
    row("CPU ratio, worst run", cpu_ratios[-1], "×", 1.0, "≤ 1.5", baseline="-")
    per_commit = med(ours, 2) / n_cycles
    row("SD bytes per durable cycle (puts, checkpoints incl.)", per_commit, "B", FLOOR_B, "≤ 5,120 B",
        baseline="one 4 KiB page per fsync (floor)")
    row("SD MB per node-day (puts)", per_commit * CYCLES_PER_DAY / 1e6, "MB", FLOOR_B * CYCLES_PER_DAY / 1e6,
        f"≤ {5120 * CYCLES_PER_DAY / 1e6:.1f} MB", baseline="floor: 4 KiB per 10 s cycle")
    for label, total in steady.items():
        row(f"SD bytes per cycle incl. acks every {label}", total / n_cycles, "B", FLOOR_B,
            "- (each ack is a durable commit too)", baseline="one 4 KiB page per fsync (floor)")
    row("bytes written per reading", med(ours, 2) / n, "B", med(base, 2) / n, "ratio ≤ 1.0")
    rows.append({"metric": "bytes written per reading vs own layout batched", "value": med(ours, 2) / n,
                 "unit": "B", "baseline": "our layout, commit every 7 cycles (not durable per cycle)",
                 "baseline_value": med(batched, 2) / n, "ratio": med(ours, 2) / max(med(batched, 2), 1),
                 "goal": "- (the price of durable-per-cycle)", "lower_is_better": True})
    row("file size per reading", med(ours, 3) / n, "B", med(base, 3) / n, "-")
    if med(ours, 2) == 0:
        print("warning: no bytes counted: is the bench directory on tmpfs? set STREETNODE_BENCH_DIR",
              file=sys.stderr)
    return rows


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    rows = run(quick=quick)
    print(f"buffer: {len(CHANNELS)} channels per cycle, {'quick' if quick else 'full'} run;"
          f" baseline = {rows[0]['baseline']}")
    print(f"{'metric':52} {'ours':>12} {'baseline':>12} {'ratio':>7}  goal")
    for r in rows:
        print(f"{r['metric']:52} {r['value']:12.2f} {r['baseline_value']:12.2f} {r['ratio']:7.2f}"
              f"  {r['goal']}  [{r['unit']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
