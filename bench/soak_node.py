"""The node of the month soak (bench/soak.py), as a process of its own, on emulated time.

The node's real `SqliteBuffer` (a real file on disk) and real `Uploader` (HTTPS, verified against a
test root, TLS sessions resumed) run against the shipped receiver, started and stopped here as a
real process (``streetnode-central serve --tls-cert --tls-key`` on a fixed loopback port). Time is
emulated: each step puts one sampling cycle of the example config (`bench.backlog`) stamped at the
emulated time and advances it by the sampling interval; an upload round runs whenever the emulated
upload interval has passed and the uploader's backoff (on the emulated clock) allows it. So a month
takes minutes; what it exercises is what a month does to the node's footprint: the buffer's file
and WAL, SQLite's caches, the HTTP and TLS state, threads and file descriptors.

Not emulated here: the sampler and the drivers (`streetnode run`'s RSS is bench/agent.py's); the
round's real duration (a drain runs with the emulated clock standing still).

``python -m bench.soak_node PLAN.json`` prints one JSON object per emulated hour on stdout.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import backlog
from bench.receiver import start_central, stop_central
from bench.sim import health
from drivers.quality import Quality
from node.buffer import SqliteBuffer, store
from node.model import Sample, Stamp
from node.uploader import Uploader

NODE = "soak-node-1"


class EmulatedTime:
    """Wall and monotonic time that only move when the soak says so."""

    def __init__(self, start_s: float) -> None:
        self.start = start_s
        self.now = start_s

    def wall(self) -> float:
        return self.now

    def mono(self) -> float:
        return self.now - self.start + 1000.0

    @property
    def day(self) -> float:
        return (self.now - self.start) / 86400


# The central's per-node quotas (central/quotas.py) refill in real time: a month emulated in minutes
# is thousands of times a node's real rate, and the default buckets (1,000,000 readings, 256 MiB of
# stored bytes: ~21 days of the example node) ran dry on day 20, so every later round got 429 and
# the backlog grew to the end. The soak's central gets buckets that hold the whole month.
SOAK_LIMITS = "[limits]\nquota_readings_burst = 100_000_000\nquota_bytes_burst = 68_719_476_736\n"


class Central:
    """The receiver as a real process on a fixed port, stopped and started by the soak."""

    def __init__(self, db_url: str, port: int, cert: str, key: str, config: str | None = None) -> None:
        self.args = ["serve", "--listen", f"127.0.0.1:{port}", "--db", db_url, "--tls-cert", cert,
                     "--tls-key", key]
        if config is not None:
            self.args += ["--config", config]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc, _ = start_central(self.args, timeout=60)

    def stop(self) -> None:
        if self.proc is None:
            return
        before = _write_bytes()
        stop_central(self.proc, timeout=20)
        self.proc = None
        CHILD_IO[0] += _write_bytes() - before  # reaping it added the central's writes to ours


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes"):
            return int(line.split()[1])
    return 0


CHILD_IO = [0]  # write_bytes of reaped children (the central): Linux adds them to the parent's


def metrics(clock: EmulatedTime, buf: SqliteBuffer, path: Path, **extra: Any) -> dict[str, Any]:
    st = buf.stats()
    return {"day": round(clock.day, 4), "rss_kib": _status("VmRSS"), "hwm_kib": _status("VmHWM"),
            "fds": len(os.listdir("/proc/self/fd")), "threads": _status("Threads"),
            "py_threads": threading.active_count(), "file_bytes": store.file_size(path),
            "sd_bytes": _write_bytes() - CHILD_IO[0], "backlog": st.readings, **extra}


def run(plan: dict[str, Any]) -> None:
    days = float(plan["days"])
    out_start, out_end = plan["outage"]
    storm_start, storm_end = plan["storm"]
    state = Path(plan["state_dir"])
    clock = EmulatedTime(time.time() - (days + 1) * 86400)  # every stamp in the past
    key = bytes.fromhex(plan["key"])  # registered with the central by bench/soak.py
    limits = state / "central.toml"
    limits.write_text(SOAK_LIMITS)
    central = Central(plan["central_db"], plan["port"], plan["cert"], plan["tls_key"], str(limits))
    central.start()
    path = state / "buffer.db"
    buf = SqliteBuffer(path, NODE, clock=clock.wall, timer=clock.mono)
    buf.open()
    up = Uploader(buf, f"https://127.0.0.1:{plan['port']}", key, NODE, ca_bundle=plan["ca"],
                  timer=clock.mono, health=lambda: health(buf, storm, clock.start))
    calm = backlog.cycles(10**12, start_ms=int(clock.now * 1000))
    next_round = clock.now
    next_report = clock.now
    rounds = failed = uploaded = 0
    storm = False
    up_state = True
    try:
        while clock.day < days:
            day = clock.day
            want_up = not out_start <= day < out_end
            if want_up != up_state:
                (central.start if want_up else central.stop)()
                up_state = want_up
            storm = storm_start <= day < storm_end
            stamp, samples = next(calm)
            stamp = Stamp(int(clock.now * 1000), stamp.boot_ms, stamp.boot_id, True)
            if storm:
                samples = [Sample(s.channel, s.value, s.flags | int(Quality.STORM)) for s in samples]
            buf.put(samples, stamp)
            if clock.now >= next_round and up.ready(clock.mono()):
                res = up.run_round()
                rounds += 1
                failed += res.error is not None
                uploaded += res.readings
                next_round = clock.now + (10 if storm else 600)
            if clock.now >= next_report:
                print(json.dumps(metrics(clock, buf, path, central_up=up_state, storm=storm, rounds=rounds,
                                         failed_rounds=failed, uploaded=uploaded)), flush=True)
                next_report = clock.now + 3600
            clock.now += 5 if storm else 10
        res = up.run_round()  # the last cycles
        uploaded += res.readings
        print(json.dumps(metrics(clock, buf, path, central_up=up_state, storm=storm, rounds=rounds,
                                 failed_rounds=failed, uploaded=uploaded, final=True)), flush=True)
    finally:
        up.close()
        buf.close()
        central.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the outage's failed rounds are counted, not logged
    run(json.loads(Path(sys.argv[1]).read_text()))
