"""The chaos run: real `streetnode run` and `streetnode-central serve` processes, broken at random.

One `ChaosRun` owns a work directory, a central receiver process (SQLite or PostgreSQL), the
fault proxy (`tests.support.faultproxy`) between node and central, and a sequence of agent
lifetimes. Each lifetime starts `python -m node run` on emulated hardware playing a scenario
file written for it (a random sensor-fault schedule), sets a random proxy fault, lets the
agent sample and upload for a random 0.4-1.6 s, and ends it with SIGKILL (sometimes SIGTERM).
Between lifetimes the central may be killed/stopped and restarted on a new port (the proxy is
re-pointed). Before the first lifetime the buffer is filled to its cap (a node that was offline
for a long time) and the first lifetimes see no central, so the *agent* evicts at the cap.

At the end the proxy passes, the central is up, a last agent lifetime uploads and is SIGTERMed,
and what is left is drained with the real uploader. Then `verify()` compares the agent's durable
record (`SqliteBuffer.inspect`: epoch, last_seq N) with the central's store: per epoch the stored
seqs and the seqs covered by gaps partition 1..N exactly, gap counts match their ranges, no
duplicates, and readings sampled from the buffer between kills carry the same channel, value and
boot time at the central (a sequence number is never reused for another reading).

``python -m tests.e2e.chaos --kills 500 [--db postgresql] [--seed N]`` runs the long mode.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.buffer import queries
from tests.support.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
NODE = "chaos-1"
SPEED = 60.0  # scenario seconds per real second
CALM = ROOT / "drivers" / "emulator" / "scenarios" / "calm.toml"
PREFILL_CHANNELS = ["weather.temperature_c", "weather.humidity_pct", "weather.pressure_hpa",
                    "air.pm1_0_ugm3", "air.pm2_5_ugm3", "air.pm10_ugm3"]
# proxy faults of one lifetime: (mode, params); "pass" most often so uploads make progress
PROXY_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("pass", {}), ("pass", {}), ("pass", {}), ("pass", {}),
    ("refuse", {}), ("blackhole", {}), ("delay", {"delay": 1.5}), ("cut", {}), ("cut", {}),
    ("status", {"status": 503}), ("status", {"status": 500}),
    ("status", {"status": 429, "retry_after": "1"}),
]
SENSOR_FAULTS = [("bme280", "absent"), ("bme280", "eio"), ("bme280", "nack"), ("pm25", "absent"),
                 ("pm25", "eio"), ("pm25", "nack")]


class ChaosError(AssertionError):
    pass


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("STREETNODE_CONFIG", "STREETNODE_DEBUG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
              "JOURNAL_STREAM", "STREETNODE_FAULTS"):
        env.pop(k, None)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def drain_buffer(path: Path, node: str, url: str, key: bytes, *, records_too: bool = False,
                 **buffer_options: Any) -> None:
    """Upload what is left in a stopped agent's buffer with the real uploader (60 s at most)."""
    from node.buffer import SqliteBuffer
    from node.uploader import Uploader

    buf = SqliteBuffer(path, node, **buffer_options)
    buf.open()
    up = Uploader(buf, url, key, node, backoff_initial=0.1, backoff_max=1.0)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            st = buf.stats()
            if not (st.readings or st.gaps_pending or st.incidents_pending):
                break
            if up.ready():
                up.run_round(time.monotonic() + 10)
            else:
                time.sleep(0.05)
        st = buf.stats()
        if st.readings or st.gaps_pending or (records_too and st.incidents_pending):
            raise ChaosError(f"backlog not drained: {st}")
    finally:
        up.close()
        buf.close()


# ---------------------------------------------------------------- the central as a process
class CentralProcess:
    """`streetnode-central serve --listen 127.0.0.1:0 --db URL`; the port is read from its one line."""

    def __init__(self, db_url: str, log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.db_url, self.log_path, self.args = db_url, log_path, args
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._ready.clear()
        self.port = None
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from central.cli import main; sys.exit(main())",
             "serve", "--listen", "127.0.0.1:0", "--db", self.db_url, *self.args],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        threading.Thread(target=self._read_port, args=(self.proc,), daemon=True).start()

    def _read_port(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("listening on http://127.0.0.1:"):
                self.port = int(line.rsplit(":", 1)[1])
                self._ready.set()
        proc.stdout.close()

    def wait_ready(self, timeout: float = 30.0) -> int:
        if not self._ready.wait(timeout) or self.port is None:
            raise ChaosError(f"central did not start within {timeout}s (log {self.log_path})")
        return self.port

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# ---------------------------------------------------------------- figures
@dataclass
class Figures:
    seed: int = 0
    db: str = "sqlite"
    lifetimes: int = 0
    kills: int = 0
    terms: int = 0
    central_restarts: int = 0
    central_kills: int = 0
    prefilled: int = 0
    prefill_evicted: int = 0
    acknowledged: int = 0
    stored: int = 0
    gap_records: int = 0
    gap_readings: int = 0
    gap_reasons: dict[str, int] = field(default_factory=dict)
    evicted_by_agent: int = 0
    proxy_faults: dict[str, int] = field(default_factory=dict)
    clock_plans: int = 0
    clock_steps_scheduled: int = 0
    clock_corrections_logged: int = 0
    unsynced_at_central: int = 0
    clock_errors: int = 0
    sensor_faults_scheduled: int = 0
    sensor_fault_incidents: int = 0
    sensor_recoveries: int = 0
    reuse_samples_checked: int = 0
    lost: int = 0
    duplicates: int = 0
    overlap: int = 0
    gap_overlap: int = 0
    seconds: float = 0.0

    def table(self) -> str:
        rows = [
            ("seed (replay: STREETNODE_CHAOS_SEED)", self.seed), ("central store", self.db),
            ("agent lifetimes", self.lifetimes), ("  ended by SIGKILL", self.kills),
            ("  ended by SIGTERM", self.terms),
            ("central restarts (of which SIGKILLed)", f"{self.central_restarts} ({self.central_kills})"),
            ("readings prefilled (buffer at its 1 MiB cap)", self.prefilled),
            ("readings acknowledged by the agent (1..N)", self.acknowledged),
            ("readings stored at the central", self.stored),
            ("gaps reported (records / readings)", f"{self.gap_records} / {self.gap_readings}"),
            ("  by reason", ", ".join(f"{k} {v}" for k, v in sorted(self.gap_reasons.items())) or "-"),
            ("  evicted at the cap while the agent ran", self.evicted_by_agent),
            ("proxy faults", ", ".join(f"{k} {v}" for k, v in sorted(self.proxy_faults.items())) or "-"),
            ("sensor faults scheduled / incidents stored / recoveries logged",
             f"{self.sensor_faults_scheduled} / {self.sensor_fault_incidents} / {self.sensor_recoveries}"),
            ("lifetimes with a clock behind and unsynced / NTP steps scheduled",
             f"{self.clock_plans} / {self.clock_steps_scheduled}"),
            ("clock corrections logged by the agent", self.clock_corrections_logged),
            ("readings stored still flagged clock_unsynced", self.unsynced_at_central),
            ("readings not flagged unsynced but off the true time", self.clock_errors),
            ("seq reuse probes (buffer vs central)", self.reuse_samples_checked),
            ("LOST", self.lost), ("DUPLICATES", self.duplicates), ("stored AND in a gap", self.overlap),
            ("in two gaps (counted missing twice)", self.gap_overlap),
            ("wall time (s)", f"{self.seconds:.1f}"),
        ]
        w = max(len(k) for k, _ in rows)
        return "\n".join(["chaos run figures", *(f"  {k:<{w}}  {v}" for k, v in rows)])


# ---------------------------------------------------------------- the run
class ChaosRun:
    def __init__(self, workdir: Path, db_url: str, *, kills: int, seed: int, db_label: str = "sqlite",
                 lifetime: tuple[float, float] = (0.4, 1.6), outage_share: float = 0.2,
                 verbose: bool = False) -> None:
        self.dir = Path(workdir)
        self.db_url, self.kills_wanted, self.seed = db_url, kills, seed
        self.lifetime = lifetime
        self.outage_share = outage_share
        self.verbose = verbose
        self.rng = random.Random(seed)  # the faults: a seed replays the same sequence of choices
        self._probe_rng = random.Random(seed + 1)  # what to sample depends on timing: kept apart
        self.fig = Figures(seed=seed, db=db_label)
        self.state_dir = self.dir / "state"
        self.buffer_path = self.state_dir / "buffer.db"
        self.key = secrets.token_bytes(32)
        self.central = CentralProcess(db_url, self.dir / "central.log")
        self.proxy: FaultProxy | None = None
        self.probes: dict[int, tuple[str, float | None, int]] = {}  # seq -> (channel, value, boot_ms)
        self._t0_ms = self._t_end_ms = 0
        self._central_down_until = -1

    # ------------------------------------------------------------ setup
    def _config(self, url: str, scenario: Path) -> Path:
        kf = self.dir / "node.key"
        if not kf.exists():
            kf.write_text(self.key.hex())
            kf.chmod(0o600)
        text = f"""
[node]
id = "{NODE}"
state_dir = "{self.state_dir}"
log_level = "info"

[central]
url = "{url}"
key_file = "{kf}"
connect_timeout = "0.5s"
read_timeout = "1s"

[upload]
interval = "1s"
backoff_initial = "0.1s"
backoff_max = "1s"
max_batch_readings = 2000

[buffer]
max_size = "1MiB"

[storm]
enabled = false

[[sensors]]
type = "bme280"
name = "weather"
interval = "0.1s"

[[sensors]]
type = "pm25"
name = "air"
interval = "0.1s"

[emulation]
enabled = true
scenario = "{scenario}"
speed = {SPEED}
"""
        p = self.dir / "config.toml"
        p.write_text(text)
        return p

    def _scenario(self, i: int, seconds: float) -> Path:
        """calm's keyframes plus a random sensor-fault schedule over this lifetime (scenario seconds)."""
        faults = []
        if self.rng.random() < 0.35:
            target, fault = self.rng.choice(SENSOR_FAULTS)
            start = self.rng.uniform(0.0, 0.7) * seconds * SPEED
            until = start + self.rng.uniform(0.1, 0.5) * seconds * SPEED
            faults.append((target, fault, start, until))
            self.fig.sensor_faults_scheduled += 1
        text = CALM.read_text()
        if self.rng.random() < 0.3:  # no RTC: the node starts behind and unsynced; NTP may step it
            behind = self.rng.choice([365 * 86400, 30 * 86400, 3600])
            # each such lifetime is a boot of its own (a power cut reboots the node), see docs/chaos.md
            text += f'\n[clock]\noffset_s = {-behind}\nsynced = false\nboot_id = "emu-boot-{i}"\n'
            self.fig.clock_plans += 1
            if self.rng.random() < 0.6:
                at = self.rng.uniform(0.2, 0.9) * seconds * SPEED
                text += f"steps = [{{at_s = {at:.1f}, offset_s = 0, synced = true}}]\n"
                self.fig.clock_steps_scheduled += 1
        if faults:
            text = text.replace("repeat = true", "repeat = true\nfaults = [\n" + "".join(
                f'  {{target = "{t}", fault = "{f}", from_s = {a:.1f}, until_s = {b:.1f}}},\n'
                for t, f, a, b in faults) + "]", 1)
        p = self.dir / "scenario.toml"
        p.write_text(text)
        return p

    def _prefill(self) -> None:
        """Fill the buffer to its cap through the real SqliteBuffer: a node offline for a long time."""
        from node.buffer import SqliteBuffer
        from node.model import Sample, Stamp

        self.state_dir.mkdir(parents=True, exist_ok=True)
        buf = SqliteBuffer(self.buffer_path, NODE, max_size=1024**2)
        buf.open()
        now_ms = int(time.time() * 1000) - 86_400_000
        i = 0

        def put(n: int) -> None:
            nonlocal i
            samples = [Sample(PREFILL_CHANNELS[k % 6], round(20 + (i * 7 + k) % 300 / 10, 1), 0)
                       for k in range(n)]
            buf.put(samples, Stamp(now_ms + i * 1000, 1000 + i * 1000, "prefill-boot", True))
            i += 1

        while buf.stats().gaps_pending == 0:  # up to the cap: the buffer evicts down to 97 % of it
            put(600)
        # then just below the cap again (pages in use, as the buffer counts them), so that the
        # agent's own cycles reach it while the central is away
        cap = self._used_bytes() / 0.97
        evicted = self._evicted()
        while self._used_bytes() < cap * 0.994 and self._evicted() == evicted:
            put(60)
        self.fig.prefill_evicted = self._evicted()
        self.fig.prefilled = buf.stats().last_seq
        buf.close()

    def _ro(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=5)

    def _used_bytes(self) -> int:
        db = self._ro()
        try:
            pages, free, size = (db.execute(f"PRAGMA {p}").fetchone()[0]
                                 for p in ("page_count", "freelist_count", "page_size"))
        finally:
            db.close()
        return (pages - free) * size

    def _evicted(self) -> int:
        """Readings in pending evicted_size gaps of the buffer file."""
        db = self._ro()
        try:
            return int(db.execute("SELECT coalesce(sum(count), 0) FROM gaps WHERE reason = 'evicted_size'")
                       .fetchone()[0])
        finally:
            db.close()

    # ------------------------------------------------------------ one lifetime
    def _start_agent(self, cfg: Path, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as f:
            return subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "run"],
                                    cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=f)

    def _proxy_fault(self, i: int, outage: bool) -> None:
        assert self.proxy is not None
        if outage:
            self.proxy.set(self.rng.choice(["refuse", "blackhole", "status"]), count=None, status=503)
            return
        mode, params = self.rng.choice(PROXY_FAULTS)
        if self.rng.random() < 0.5:  # the whole lifetime
            self.proxy.set(mode, count=None, **params)
        else:  # the next 1-3 requests, then pass
            self.proxy.set("pass", count=None)
            self.proxy.set(mode, count=self.rng.randint(1, 3), **params)

    def _central_chaos(self, i: int) -> None:
        """Sometimes kill or stop the central; bring it back a lifetime or two later on a new port."""
        assert self.proxy is not None
        if self.central.proc is None and i >= self._central_down_until:
            self.central.start()  # becomes ready in the background; retarget when it is
            self.fig.central_restarts += 1
        up = self.central.proc is not None and self.central.ready
        if up and self.proxy.upstream[1] != self.central.port:
            self.proxy.retarget(self.central.port)  # type: ignore[arg-type]
        # draw every time, so a seed replays the same choices whatever the central's start-up took
        kill, sig, down = self.rng.random() < 0.06, self.rng.choice([signal.SIGKILL, signal.SIGTERM]), \
            self.rng.randint(1, 2)
        if self.central.proc is not None and self.central.ready and kill:
            self.fig.central_kills += sig == signal.SIGKILL
            self.central.stop(sig)
            self._central_down_until = i + down

    def _probe(self) -> None:
        """Remember a few readings of the (stopped) agent's file: seq -> channel, value, boot time."""
        try:
            db = sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error:
            return
        try:
            hi = queries.first_present(db, 1 << 62, desc=True)
            if hi is None:
                return
            channels = {i: (name, res) for i, name, res in db.execute("SELECT id, name, res FROM channels")}
            rows = []
            for seq, ch, value, _ in queries.window(db, max(1, hi - 399), hi, 40, desc=True):
                boot = queries.cycles_covering(db, seq, seq)[0][3]
                rows.append((seq, *channels[ch], value, boot))
        finally:
            db.close()
        for seq, name, res, value, boot in self._probe_rng.sample(rows, min(5, len(rows))):
            v = None if value is None else (round(value * res, 6) if isinstance(value, int) else float(value))
            old = self.probes.setdefault(int(seq), (name, v, int(boot)))
            if old != (name, v, int(boot)):
                raise ChaosError(f"seq {seq} changed in the buffer across a restart: "
                                 f"{old} -> {(name, v, boot)}")

    def run(self) -> Figures:
        t0 = time.monotonic()
        self._t0_ms = int(time.time() * 1000)
        self.dir.mkdir(parents=True, exist_ok=True)
        from central.store import open_store

        store = open_store(self.db_url)
        store.add_node(NODE, self.key, int(time.time() * 1000))
        store.close()
        self._prefill()
        self.central.start()
        port = self.central.wait_ready()
        self.proxy = FaultProxy(port, lifetime=24 * 3600).start()
        agent_log = self.dir / "agent.log"
        # the central is away for the first lifetimes, and longer (at most 30 more) until the
        # agent's own cycles have hit the cap
        outage = max(1, int(self.kills_wanted * self.outage_share))
        in_outage = True
        try:
            i = 0
            while self.fig.kills < self.kills_wanted:
                length = self.rng.uniform(*self.lifetime)
                self._central_chaos(i)
                self._proxy_fault(i, outage=in_outage)
                cfg = self._config(self.proxy.url, self._scenario(i, length))
                log_from = agent_log.stat().st_size if agent_log.exists() else 0
                p = self._start_agent(cfg, agent_log)
                # most lifetimes are timed from the agent's own start (a loaded machine can take
                # longer to start Python than a whole lifetime); the rest from the process's start
                if self.rng.random() < 0.8:
                    self._wait_announced(p, agent_log, log_from)
                time.sleep(length)
                if self.rng.random() < 0.1:
                    p.send_signal(signal.SIGTERM)
                    try:
                        rc = p.wait(8)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        raise ChaosError(f"lifetime {i}: agent did not stop within 8 s of SIGTERM") from None
                    if rc == -signal.SIGTERM and not self._announced(agent_log, log_from):
                        self.fig.kills += 1  # still starting Python (a loaded machine): no handler yet
                    elif rc != 0:
                        raise ChaosError(f"lifetime {i}: agent exited {rc} after SIGTERM (log {agent_log})")
                    else:
                        self.fig.terms += 1
                else:
                    p.kill()
                    rc = p.wait(10)
                    if rc != -signal.SIGKILL:
                        raise ChaosError(f"lifetime {i}: agent exited {rc} before it was killed "
                                         f"(log {agent_log})")
                    self.fig.kills += 1
                self.fig.lifetimes += 1
                self._probe()
                if in_outage:
                    self._note_cap()
                    in_outage = i + 1 < outage or (self.fig.evicted_by_agent == 0 and i + 1 < outage + 30)
                i += 1
                if self.verbose and i % 50 == 0:
                    print(f"  ... {i} lifetimes, {self.fig.kills} kills, {time.monotonic() - t0:.0f}s",
                          flush=True)
            self._finish(agent_log)
        finally:
            self.proxy.stop()
            self.central.stop()
        self.fig.proxy_faults = {k: v for k, v in self.proxy.counts.items()
                                 if k in ("refuse", "blackhole", "delay", "cut", "status")}
        log_text = agent_log.read_text(errors="replace")
        self.fig.sensor_recoveries = log_text.count(" recovered after ")
        self.fig.clock_corrections_logged = log_text.count("unsynchronized readings of this boot corrected")
        self._t_end_ms = int(time.time() * 1000)
        self.verify()
        self.fig.seconds = time.monotonic() - t0
        (self.dir / "figures.txt").write_text(self.fig.table() + "\n")
        (self.dir / "figures.json").write_text(json.dumps(self.fig.__dict__, indent=1))
        return self.fig

    def _wait_announced(self, p: subprocess.Popen[bytes], agent_log: Path, offset: int,
                        timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._announced(agent_log, offset):
            if p.poll() is not None or time.monotonic() > deadline:
                raise ChaosError(f"agent did not start within {timeout}s (log {agent_log})")
            time.sleep(0.02)

    @staticmethod
    def _announced(agent_log: Path, offset: int) -> bool:
        """The agent logged that it runs (its SIGTERM handler is installed before that line)."""
        with open(agent_log, "rb") as f:
            f.seek(offset)
            return b" running on " in f.read()

    def _note_cap(self) -> None:
        """After the outage: the agent itself evicted at the cap (pending evicted gaps grew)."""
        self.fig.evicted_by_agent = self._evicted() - self.fig.prefill_evicted

    def _finish(self, agent_log: Path) -> None:
        """Central up, proxy passing; a last lifetime uploads, SIGTERM; drain the rest."""
        assert self.proxy is not None
        if self.central.proc is None:
            self.central.start()
            self.fig.central_restarts += 1
        self.proxy.retarget(self.central.wait_ready())
        self.proxy.set("pass", count=None)
        cfg = self._config(self.proxy.url, self._scenario(-1, 3.0))
        p = self._start_agent(cfg, agent_log)
        deadline = time.monotonic() + 60
        from node.buffer import SqliteBuffer

        time.sleep(2.0)
        while time.monotonic() < deadline and SqliteBuffer.inspect(self.buffer_path).readings > 200:
            time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        if p.wait(10) != 0:
            raise ChaosError(f"last lifetime: agent exited {p.returncode} after SIGTERM (log {agent_log})")
        self.fig.terms += 1
        self.fig.lifetimes += 1
        self._drain()

    def _drain(self) -> None:
        assert self.proxy is not None
        drain_buffer(self.buffer_path, NODE, self.proxy.url, self.key, max_size=1024**2)

    # ------------------------------------------------------------ the proof
    def verify(self) -> None:
        from central.store import open_store
        from drivers.quality import Quality
        from node.buffer import SqliteBuffer

        st = SqliteBuffer.inspect(self.buffer_path)
        if st.epoch != 1:
            raise ChaosError(f"buffer epoch {st.epoch}: the buffer was set aside during the run "
                             "(corruption is not injected here)")
        n = st.last_seq
        store = open_store(self.db_url)
        try:
            stored = store.seqs(NODE, 1)
            total = store.count_readings(NODE)
            gaps = [g for g in store.gaps(NODE) if g.epoch == 1]
            incidents = store.incidents(NODE)
            probe_rows = {}
            unsynced = int(Quality.CLOCK_UNSYNCED)
            for r in store.readings(NODE, limit=None):
                if r.seq in self.probes:
                    probe_rows[r.seq] = r
                if r.flags & unsynced:
                    self.fig.unsynced_at_central += 1
                elif not self._t0_ms - 2 * 86_400_000 <= r.wall_ms <= self._t_end_ms + 5000:
                    self.fig.clock_errors += 1  # synced or corrected, yet not on the true timeline
        finally:
            store.close()
        f = self.fig
        f.acknowledged = n
        stored_set = set(stored)
        f.stored = len(stored)
        f.duplicates = (len(stored) - len(stored_set)) + (total - len(stored_set))
        covered: set[int] = set()
        reasons: Counter[str] = Counter()
        bad_counts = []
        for g in gaps:
            span = set(range(g.first_seq, g.last_seq + 1))
            if g.count != len(span):
                bad_counts.append(g)
            f.gap_overlap += len(covered & span)  # two gaps covering one seq
            covered |= span
            reasons[g.reason] += len(span)
        f.gap_records, f.gap_readings, f.gap_reasons = len(gaps), len(covered), dict(reasons)
        f.overlap += len(stored_set & covered)
        want = set(range(1, n + 1))
        missing = want - stored_set - covered
        extra = (stored_set | covered) - want
        f.lost = len(missing)
        f.sensor_fault_incidents = sum(1 for x in incidents if x.kind == "sensor_fault")
        mismatched = []
        for seq, (ch, v, boot) in self.probes.items():
            r = probe_rows.get(seq)
            if r is None:
                continue  # evicted before it was uploaded: covered by a gap (checked above)
            f.reuse_samples_checked += 1
            rv = None if r.value is None else round(float(r.value), 6)
            if (r.channel, rv, int(r.boot_ms)) != (ch, v, boot):
                mismatched.append((seq, (ch, v, boot), (r.channel, rv, r.boot_ms)))
        problems = []
        if missing:
            problems.append(f"{len(missing)} acknowledged readings neither stored nor in a gap, e.g. "
                            f"{sorted(missing)[:10]}")
        if extra:
            problems.append(f"{len(extra)} seqs stored or in a gap above last_seq {n}: {sorted(extra)[:10]}")
        if f.duplicates:
            problems.append(f"{f.duplicates} duplicates (count_readings {total}, distinct {len(stored_set)})")
        if f.overlap:
            problems.append(f"{f.overlap} seqs both stored and in a gap")
        if f.gap_overlap:
            problems.append(f"{f.gap_overlap} seqs in two gaps: reported missing twice")
        if bad_counts:
            problems.append(f"gap counts do not match their ranges: {bad_counts[:5]}")
        if f.clock_errors:
            problems.append(f"{f.clock_errors} readings not flagged clock_unsynced carry a wall time "
                            "outside the run")
        if mismatched:
            problems.append(f"{len(mismatched)} seqs carry another reading at the central: {mismatched[:5]}")
        if problems:
            raise ChaosError(f"chaos run (seed {self.seed}) failed:\n  " + "\n  ".join(problems)
                             + "\n" + f.table())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the streetnode chaos run (long mode)")
    ap.add_argument("--kills", type=int, default=500)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    import tempfile

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="streetnode-chaos-"))
    if args.db == "sqlite":
        url = f"sqlite:///{workdir / 'central.db'}"
    else:
        pg = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
        schema = f"sn_chaos_{secrets.token_hex(6)}"
        url = f"{pg}?schema={schema}"
    print(f"chaos: {args.kills} kills, {args.db}, seed {seed}, work dir {workdir}", flush=True)
    fig = ChaosRun(workdir, url, kills=args.kills, seed=seed, db_label=args.db, verbose=True).run()
    print(fig.table())
    if args.db == "postgresql":  # kept when the run failed: the evidence
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    sys.exit(main())
