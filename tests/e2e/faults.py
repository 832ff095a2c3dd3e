"""Faults of the world that lies (#20), injected into real processes, and the proof that nothing is lost.

Each fault runs real ``python -m node run`` agents on emulated hardware against one real
``streetnode-central serve`` (SQLite or PostgreSQL), each agent behind its own fault proxy
(`tests.support.faultproxy`, used as a link switch: ``refuse`` = offline, ``pass`` = online):

- ``clone_fresh``: two agents with one identity (node id + key) from one fresh card image;
- ``clone_used``: a used card copied (state dir with its buffer, key) into a second Pi;
- ``rollback``: the buffer's files copied while the agent is stopped, the agent runs on, is
  SIGKILLed, and the files are put back (an SD card that lost its last writes);
- ``truncate``: the buffer database truncated at a random point while the agent is stopped;
- ``deleted``: the buffer database (and WAL) deleted while the agent is stopped, a backlog unsent;
- ``clock_1970``: an emulated clock without RTC at 1970, offline, then online;
- ``year_behind``: an emulated clock a year behind that reports itself synchronized.
(``concurrent_pg`` — overlapping concurrent batches on PostgreSQL — is in `tests.e2e.concurrent`.)

**Ground truth, independent of the code under test.** Before an agent writes its first cycle
(or, for a database the agent creates itself, in one transaction with a copy of every cycle
already in it) `Truth.arm` adds to the buffer file a table ``proof_truth`` and an SQLite trigger
``AFTER INSERT ON cycles`` that copies each cycle row (its packed readings, ``cycles.data``; see
node/buffer/packed.py) with the epoch of the file and the *real* time of the insert. The trigger
commits with the cycle or not at all, so the table holds exactly what the agent acknowledged: every
reading made durable in its buffer. It survives the acks' deletes; `Truth.snapshot` reads it
(the agent stopped) before each fault destroys the file. A reading's true time comes from its
boot clock stamp (``boot_ms``, the machine's real CLOCK_BOOTTIME) and the real wall − boot offset
measured in this process: the emulated wall clock never enters it.

**The check** (`check`): each acknowledged reading is *stored* when the central holds a reading
with its content (channel, value, boot id, boot ms; any epoch/seq: a node may renumber a
colliding reading into a new epoch); *gap-covered* when not stored, its (epoch, seq) is not held by
the central and a central gap of its epoch covers the seq; *pending* when still in an agent's buffer
at the end; *destroyed* when it was unsent in a file the fault destroyed (no copy exists: only the
node's records outside the file can name it, else an incident tells the loss); else *lost*
(silently discarded when the central holds that (epoch, seq) with another reading: a *conflict*
the central took as a duplicate).
Stored readings: within 1 s of true time, or flagged CLOCK_UNSYNCED, else *time wrong*.

``python -m tests.e2e.faults [--db postgresql] [--long]`` runs every fault and prints the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.clock import boot_ms as real_boot_ms
from tests.e2e.chaos import CALM, ROOT, CentralProcess, _env
from tests.support.faultproxy import FaultProxy

YEAR_S = 365 * 86400
UNSYNCED = 1 << 8  # drivers.quality.Quality.CLOCK_UNSYNCED
TIME_TOLERANCE_MS = 1000

ARM_TABLE = """
CREATE TABLE IF NOT EXISTS proof_truth(
    epoch INTEGER, first_seq INTEGER, n INTEGER, wall_ms INTEGER, boot_ms INTEGER, boot INTEGER,
    clk INTEGER, data BLOB, at_ms INTEGER, PRIMARY KEY (epoch, first_seq, n, data))
"""
ARM_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS proof_truth_cycle AFTER INSERT ON cycles WHEN NEW.data IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO proof_truth VALUES (
        (SELECT v FROM meta WHERE k = 'epoch'), NEW.first_seq, NEW.n, NEW.wall_ms, NEW.boot_ms,
        NEW.boot, NEW.clk, NEW.data, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
"""


NODE_IDS = {"clone_fresh": "pf-twin-a", "clone_used": "pf-twin-b", "rollback": "pf-rb", "truncate": "pf-cut",
            "deleted": "pf-del", "clock_1970": "pf-c1970", "year_behind": "pf-yr"}


class FaultError(AssertionError):
    pass


# ---------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class TruthReading:
    agent: str
    epoch: int
    seq: int
    channel: str
    value: float | None
    flags: int
    boot_id: str
    boot_ms: int
    wall_ms: int  # as first stamped by the node (its clock, maybe wrong)
    at_ms: int  # real time of the durable insert

    @property
    def content(self) -> tuple[str, float | None, str, int]:
        return (self.channel, _round(self.value), self.boot_id, self.boot_ms)


def _epoch_of(meta: dict[str, Any]) -> Callable[[int], int]:
    """seq -> epoch of a buffer file: ``meta.segments`` = JSON [[first_seq, epoch], ...] when the
    file spans epochs (a new epoch goes on numbering from the file's next seq), else ``meta.epoch``.
    (A cycle the trigger sees inserted belongs to the current epoch: ``meta.epoch`` then.)"""
    epoch = int(meta.get("epoch") or 0)
    try:
        segments = sorted((int(f), int(e)) for f, e in json.loads(meta.get("segments") or "[]"))
    except (TypeError, ValueError):
        segments = []

    def of(seq: int) -> int:
        found = epoch
        for first, seg_epoch in segments:
            if first <= seq:
                found = seg_epoch
        return found

    return of


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 6)


class Truth:
    """Every reading each agent made durable in its buffer (see the module's text)."""

    def __init__(self) -> None:
        self.readings: dict[tuple[str, int, int, tuple[Any, ...]], TruthReading] = {}
        self.exclude: dict[str, set[tuple[int, int]]] = {}  # agent -> (epoch, seq) inherited by a clone

    @staticmethod
    def arm(path: Path) -> None:
        """Add the recorder to a buffer file; cycles already in it are copied in the same transaction."""
        db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(ARM_TABLE)
            db.execute(ARM_TRIGGER)
            meta = dict(db.execute("SELECT k, v FROM meta WHERE k IN ('epoch', 'segments')").fetchall())
            epoch_of = _epoch_of(meta)
            now_ms = int(time.time() * 1000)
            rows = db.execute("SELECT first_seq, n, wall_ms, boot_ms, boot, clk, data FROM cycles"
                              " WHERE data IS NOT NULL").fetchall()
            db.executemany("INSERT OR IGNORE INTO proof_truth VALUES (?,?,?,?,?,?,?,?,?)",
                           [(epoch_of(r[0]), *r, now_ms) for r in rows])
            db.execute("COMMIT")
        finally:
            db.close()

    @staticmethod
    def arm_when_created(path: Path, proc: subprocess.Popen[bytes], old_inode: int | None,
                         running: Callable[[], bool], timeout: float = 40.0) -> None:
        """Arm the database the agent opens: a new file (not ``old_inode``: a damaged file it moves
        aside must not be touched first), or the old one once the agent runs on it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise FaultError(f"agent exited {proc.returncode} before its buffer {path} existed")
            try:
                inode: int | None = path.stat().st_ino
            except FileNotFoundError:
                inode = None
            if inode is not None and (inode != old_inode or running()):
                try:
                    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
                    try:
                        epoch = db.execute("SELECT v FROM meta WHERE k = 'epoch'").fetchone()
                    finally:
                        db.close()
                except sqlite3.Error:
                    epoch = None
                if epoch is not None:
                    Truth.arm(path)
                    return
            time.sleep(0.02)
        raise FaultError(f"buffer {path} not created within {timeout}s")

    def decode(self, agent: str, path: Path) -> list[TruthReading]:
        from node.buffer import packed
        from node.buffer.base import decode_value

        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            channels = {i: (name, res) for i, name, res in db.execute("SELECT id, name, res FROM channels")}
            boots = dict(db.execute("SELECT id, boot_id FROM boots").fetchall())
            rows = db.execute("SELECT epoch, first_seq, n, wall_ms, boot_ms, boot, data, at_ms"
                              " FROM proof_truth").fetchall()
        finally:
            db.close()
        out = []
        for epoch, first, _n, wall, boot_ms, boot, data, at_ms in rows:
            for k, (ch, value, flags) in enumerate(packed.decode(data)):
                name, res = channels[ch]
                out.append(TruthReading(agent, int(epoch), first + k, name, decode_value(value, res),
                                        flags, boots[boot], int(boot_ms), int(wall), int(at_ms)))
        return out

    def snapshot(self, agent: str, path: Path) -> int:
        """Add what the (stopped) agent's file recorded; returns the readings it holds."""
        if not path.exists():
            return 0
        got = self.decode(agent, path)
        skip = self.exclude.get(agent, set())
        for r in got:
            if (r.epoch, r.seq) in skip:
                continue
            key = (agent, r.epoch, r.seq, r.content)
            old = self.readings.get(key)
            if old is None or r.at_ms < old.at_ms:
                self.readings[key] = r
        return len(got)

    def inherit(self, agent: str, path: Path) -> None:
        """``agent``'s file is a copy: the readings in it now are the original's, not its own."""
        self.exclude[agent] = {(r.epoch, r.seq) for r in self.decode(agent, path)}

    def of(self, agent: str | None = None) -> list[TruthReading]:
        """One entry per sample (agent, content): a reading the node re-put under a new (epoch, seq)
        is the same sample; its first numbering is kept (to find it renumbered at the central)."""
        first: dict[tuple[Any, ...], TruthReading] = {}
        for r in self.readings.values():
            if agent is not None and r.agent != agent:
                continue
            old = first.get((r.agent, r.content))
            if old is None or (r.at_ms, r.epoch) < (old.at_ms, old.epoch):
                first[(r.agent, r.content)] = r
        return list(first.values())


# ---------------------------------------------------------------- an agent on its own card
class Agent:
    """One emulated Pi: a directory (config, key, state dir) and at most one running process."""

    def __init__(self, name: str, workdir: Path, node_id: str, key: bytes, url: str, *,
                 clock: str = "", interval: str = "0.2s") -> None:
        self.name, self.node_id, self.key, self.url = name, node_id, key, url
        self.dir = workdir / name
        self.clock, self.interval = clock, interval
        self.state_dir = self.dir / "state"
        self.root = self.dir / "root"  # this Pi's /proc (board) and /etc (card) identity files
        self.buffer = self.state_dir / "buffer.db"
        self.log = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    def write_card(self) -> None:
        """The config, key and scenario of this card (rewritten after a clone: paths are per Pi), and
        the Pi's identity files under ``root`` (node/identity.py reads them there when
        ``STREETNODE_IDENTITY_ROOT`` is set): the board's serial number, and the card's machine id."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        if not (self.root / "proc").exists():
            serial = f"10000000{secrets.token_hex(4)}"
            (self.root / "proc" / "device-tree").mkdir(parents=True)
            (self.root / "proc" / "device-tree" / "serial-number").write_text(serial + "\x00")
            (self.root / "proc" / "cpuinfo").write_text(f"Hardware\t: BCM2835\nSerial\t\t: {serial}\n")
            (self.root / "etc").mkdir()
            (self.root / "etc" / "machine-id").write_text(secrets.token_hex(16) + "\n")
        kf = self.dir / "node.key"
        kf.write_text(self.key.hex())
        kf.chmod(0o600)
        scenario = self.dir / "scenario.toml"
        text = CALM.read_text()
        # each Pi is a boot of its own: the clock section names it (and may put the clock off)
        text += f'\n[clock]\nboot_id = "{self.name}-boot"\n{self.clock}\n'
        scenario.write_text(text)
        (self.dir / "config.toml").write_text(f"""
[node]
id = "{self.node_id}"
state_dir = "{self.state_dir}"
log_level = "info"

[central]
url = "{self.url}"
key_file = "{kf}"
connect_timeout = "0.5s"
read_timeout = "2s"

[upload]
interval = "1s"
backoff_initial = "0.1s"
backoff_max = "1s"
max_batch_readings = 2000

[storm]
enabled = false

[[sensors]]
type = "bme280"
name = "weather"
interval = "{self.interval}"

[[sensors]]
type = "pm25"
name = "air"
interval = "{self.interval}"

[emulation]
enabled = true
scenario = "{scenario}"
speed = 60
""")

    def env(self) -> dict[str, str]:
        # PYTHONFAULTHANDLER: a SIGABRT (a stop that hangs, below) prints every thread's stack to the log
        return {**_env(), "STREETNODE_IDENTITY_ROOT": str(self.root), "PYTHONFAULTHANDLER": "1"}

    @property
    def config(self) -> Path:
        return self.dir / "config.toml"

    def start(self) -> subprocess.Popen[bytes]:
        if self.proc is not None:
            raise FaultError(f"agent {self.name} already runs")
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(self.config), "run"],
                                         cwd=ROOT, env=self.env(), stdout=subprocess.DEVNULL, stderr=f)
        return self.proc

    def running(self) -> bool:
        """The agent logged that it runs (its buffer is open) since its last start."""
        with open(self.log, "rb") as f:
            f.seek(self._log_from)
            return b" running on " in f.read()

    def wait_running(self, timeout: float = 40.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.running():
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise FaultError(f"agent {self.name} did not start within {timeout}s (log {self.log})")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        p, self.proc = self.proc, None
        if p is None:
            return 0
        p.send_signal(sig)
        try:
            return p.wait(15)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)  # as systemd's watchdog does: faulthandler logs the stacks
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            tail = self.log.read_text(errors="replace").splitlines()[-60:]
            raise FaultError(f"agent {self.name} did not stop within 15 s of signal {sig}; its log ends:\n"
                             + "\n".join(tail)) from None

    def backlog(self) -> int:
        from node.buffer import SqliteBuffer

        try:
            return SqliteBuffer.inspect(self.buffer).readings
        except Exception:  # a file being created or replaced: ask again
            return -1

    def status(self) -> tuple[int, str]:
        """``streetnode status --json`` of this card (the daemon stopped)."""
        r = subprocess.run([sys.executable, "-m", "node", "--config", str(self.config), "status", "--json"],
                           cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr


def clone_card(src: Agent, dst: Agent, truth: Truth) -> None:
    """Copy ``src``'s card (state dir with buffer, epoch file and state; key; /etc/machine-id) to
    ``dst``, a Pi with its own board serial number."""
    if dst.dir.exists():
        shutil.rmtree(dst.dir)
    dst.key = src.key
    dst.write_card()
    shutil.rmtree(dst.state_dir)
    shutil.copytree(src.state_dir, dst.state_dir)
    shutil.copy2(src.root / "etc" / "machine-id", dst.root / "etc" / "machine-id")  # on the card
    if dst.buffer.exists():
        truth.inherit(dst.name, dst.buffer)


def buffered_contents(path: Path) -> set[tuple[Any, ...]]:
    """(channel, value, boot id, boot ms) of every reading in a stopped agent's buffer file."""
    from node.buffer import queries
    from node.buffer.base import decode_value

    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        channels = {i: (name, res) for i, name, res in db.execute("SELECT id, name, res FROM channels")}
        boots = dict(db.execute("SELECT id, boot_id FROM boots").fetchall())
        out = set()
        for seq, ch, value, _flags in queries.window(db, 0, 1 << 62, 1 << 30):
            cycle = queries.cycles_covering(db, seq, seq)[0]
            name, res = channels[ch]
            out.add((name, _round(decode_value(value, res)), boots[cycle[4]], int(cycle[3])))
        return out
    finally:
        db.close()


def buffer_files(agent: Agent) -> list[Path]:
    return [Path(str(agent.buffer) + s) for s in ("", "-wal", "-shm")]


# ---------------------------------------------------------------- figures and the check
@dataclass
class FaultFigures:
    fault: str
    db: str = "sqlite"
    agents: int = 0
    acknowledged: int = 0
    stored: int = 0
    stored_same_seq: int = 0
    stored_renumbered: int = 0
    conflicts: int = 0  # acknowledged readings whose (epoch, seq) the central holds with other content
    conflicts_central: int | None = None  # what the central reports (receipts' conflicts), when it does
    gap_covered: int = 0
    pending: int = 0  # still in an agent's buffer when the run ended (not acknowledged by the central)
    destroyed: int = 0  # unsent when the fault destroyed their file: not stored, no gap (incident only?)
    lost: int = 0
    silently_discarded: int = 0  # lost, and their (epoch, seq) stored with another reading
    lost_ranges: list[str] = field(default_factory=list)  # "agent epoch E seq a..b", the first few
    time_ok: int = 0
    time_flagged: int = 0
    time_wrong: int = 0
    worst_time_error_s: float = 0.0
    gaps: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)  # "rule: summary" of the node's alerts
    node_list: str = ""
    node_list_visible: bool = False
    status_visible: bool = False
    status_text: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.fault:<12} {self.db:<10} ack {self.acknowledged:>5}  stored {self.stored:>5}"
                f" (renumbered {self.stored_renumbered})  conflicts {self.conflicts:>4}"
                f"  gap-covered {self.gap_covered:>4}  pending {self.pending:>3}"
                f"  destroyed-no-gap {self.destroyed:>3}  LOST {self.lost:>5}"
                f" (silently discarded {self.silently_discarded})  time ok/flagged/WRONG"
                f" {self.time_ok}/{self.time_flagged}/{self.time_wrong}"
                f" (worst {self.worst_time_error_s:.0f} s)  visible: node list"
                f" {'yes' if self.node_list_visible else 'NO'},"
                f" status {'yes' if self.status_visible else 'NO'}"
                f"  [{self.seconds:.0f} s]")


def check(fig: FaultFigures, truth: Iterable[TruthReading], store: Any, node_id: str,
          boot_offset_ms: int, pending: set[tuple[Any, ...]] | None = None,
          destroyed: set[tuple[Any, ...]] | None = None) -> FaultFigures:
    """Fill ``fig`` from the central's store against the ground truth (see the module's text).

    ``pending``: contents still in an agent's buffer at the end; ``destroyed``: contents that were
    unsent in a buffer file when the fault destroyed it (no copy of them left anywhere): neither
    stored nor in a gap, they are counted apart from ``lost`` (only an incident can name them when
    no record of their seqs outlived the file)."""
    readings = list(truth)
    stored_rows = store.readings(node_id, limit=None)
    by_content: dict[tuple[Any, ...], list[Any]] = {}
    by_seq: dict[tuple[int, int], Any] = {}
    for r in stored_rows:
        by_content.setdefault((r.channel, _round(r.value), r.boot_id, int(r.boot_ms)), []).append(r)
        by_seq[(r.epoch, r.seq)] = r
    gaps = store.gaps(node_id)
    covered: dict[int, set[int]] = {}
    for g in gaps:
        covered.setdefault(g.epoch, set()).update(range(g.first_seq, g.last_seq + 1))
        fig.gaps[g.reason] = fig.gaps.get(g.reason, 0) + g.count
    for i in store.incidents(node_id):
        fig.incidents[i.kind] = fig.incidents.get(i.kind, 0) + 1
    fig.alerts = [f"{rule}: {summary}" for rule, summary in
                  store.query("SELECT rule, summary FROM alerts WHERE node_id = ? ORDER BY id", (node_id,))]
    fig.acknowledged = len(readings)
    lost: list[tuple[str, int, int]] = []
    for t in readings:
        at_seq = by_seq.get((t.epoch, t.seq))
        same = at_seq is not None and (at_seq.channel, _round(at_seq.value), at_seq.boot_id,
                                       int(at_seq.boot_ms)) == t.content
        if at_seq is not None and not same:
            fig.conflicts += 1
        matches = [at_seq] if same else by_content.get(t.content, [])
        if matches:
            fig.stored += 1
            if same:
                fig.stored_same_seq += 1
            else:
                fig.stored_renumbered += 1
            r = matches[0]
            true_ms = t.boot_ms + boot_offset_ms
            err = abs(r.wall_ms - true_ms)
            if err <= TIME_TOLERANCE_MS:
                fig.time_ok += 1
            elif r.flags & UNSYNCED:
                fig.time_flagged += 1
            else:
                fig.time_wrong += 1
                fig.worst_time_error_s = max(fig.worst_time_error_s, err / 1000)
        elif at_seq is None and t.seq in covered.get(t.epoch, set()):
            fig.gap_covered += 1
        elif pending and t.content in pending:
            fig.pending += 1
        elif destroyed and t.content in destroyed:
            fig.destroyed += 1
        else:
            fig.lost += 1
            fig.silently_discarded += at_seq is not None
            lost.append((t.agent, t.epoch, t.seq))
    fig.lost_ranges = _ranges(sorted(set(lost)))[:8]
    return fig


def _ranges(keys: list[tuple[str, int, int]]) -> list[str]:
    """("a", 1, 5), ("a", 1, 6), ("a", 1, 9) -> ["a epoch 1 seq 5..6", "a epoch 1 seq 9..9"]."""
    out: list[list[Any]] = []
    for agent, epoch, seq in keys:
        if out and out[-1][:2] == [agent, epoch] and out[-1][3] == seq - 1:
            out[-1][3] = seq
        else:
            out.append([agent, epoch, seq, seq])
    return [f"{a} epoch {e} seq {lo}..{hi}" for a, e, lo, hi in out]


def boot_offset_ms() -> int:
    """Real wall − boot clock (ms) of this machine: the agents' boot stamps run on the same clock."""
    return int(time.time() * 1000) - real_boot_ms()


# ---------------------------------------------------------------- visibility
VISIBLE_WORDS = ("conflict", "rollback", "rolled back", "identit", "clash", "buffer_lost", "lost",
                 "suspect", "replaced")


def node_list(db_url: str, node_id: str, columns: tuple[str, ...]) -> tuple[str, bool]:
    """The header and ``node_id``'s row of ``streetnode-central node list``; visible = the row shows
    a column named with one of ``columns`` above zero (identities: above one)."""
    r = subprocess.run([sys.executable, "-c", "import sys; from central.cli import main; sys.exit(main())",
                        "node", "list", "--db", db_url], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=60)
    lines = r.stdout.splitlines()
    header = lines[0] if lines else ""
    row = next((ln for ln in lines if ln.split()[:1] == [node_id]), "")
    text = f"{header}\n{row}".strip()
    visible = False
    cells = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", row)]
    for col in re.finditer(r"\S+", header):  # a column's value overlaps its (aligned) name
        name = col.group().lower()
        if name == "ids":  # the identities column
            name = "identities"
        if not any(w in name for w in columns):
            continue
        for start, end, value in cells:
            if start < col.end() and end > col.start():
                with contextlib.suppress(ValueError):
                    visible = visible or int(value) > (1 if "identit" in name else 0)
    return text, visible


def status_visible(text: str, words: tuple[str, ...]) -> bool:
    """``streetnode status --json`` names the fault: a count above zero under a key with one of
    ``words``, or a text value with one of them."""
    try:
        doc = json.loads(text[text.index("{"):])
    except ValueError:
        return False
    hits = []

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]")
        else:
            # a count (an int > 0) under a key naming the fault, or a text naming it; a setting
            # such as clock.suspect_s = 120.0 is neither
            key_hit = (any(w in path.lower() for w in words) and type(obj) is int and obj > 0)
            val_hit = (isinstance(obj, str) and "/" not in obj  # paths name the work dirs
                       and any(w in obj.lower() for w in words))
            if key_hit or val_hit:
                hits.append((path, obj))

    walk(doc, "")
    return bool(hits)


# ---------------------------------------------------------------- one fault run
class FaultRun:
    """One fault against a running central: its agents, proxies and ground truth."""

    def __init__(self, name: str, workdir: Path, central_port: int, db_url: str, *, db_label: str,
                 rng: random.Random, scale: float = 1.0) -> None:
        self.name, self.db_url, self.rng, self.scale = name, db_url, rng, scale
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node_id = NODE_IDS[name]  # ids that name no fault word (status is searched for them)
        self.key = secrets.token_bytes(32)
        self.central_port = central_port
        self.truth = Truth()
        self.fig = FaultFigures(name, db=db_label)
        self.proxies: dict[str, FaultProxy] = {}
        self.agents: dict[str, Agent] = {}
        self.pending: set[tuple[Any, ...]] = set()  # contents still in an agent's buffer at the end
        self.destroyed: set[tuple[Any, ...]] = set()  # contents unsent in a file the fault destroyed

    def agent(self, name: str, clock: str = "") -> Agent:
        proxy = FaultProxy(self.central_port, lifetime=3600).start()
        self.proxies[name] = proxy
        a = Agent(name, self.dir, self.node_id, self.key, proxy.url, clock=clock)
        self.agents[name] = a
        return a

    def online(self, a: Agent, up: bool) -> None:
        self.proxies[a.name].set("pass" if up else "refuse", count=None)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)

    def start(self, a: Agent, *, armed: bool = False, online: bool = True) -> None:
        """Start ``a``; a buffer not armed yet is armed as the agent creates it (offline until then)."""
        old_inode = a.buffer.stat().st_ino if a.buffer.exists() else None
        if not armed:
            self.online(a, False)
        p = a.start()
        if not armed:
            Truth.arm_when_created(a.buffer, p, old_inode, a.running)
        a.wait_running()
        self.online(a, online)

    def stop(self, a: Agent, sig: int = signal.SIGTERM) -> None:
        rc = a.stop(sig)
        if sig == signal.SIGTERM and rc != 0:
            self.fig.notes.append(f"{a.name} exited {rc} after SIGTERM (log {a.log})")
        self.truth.snapshot(a.name, a.buffer)

    def finish(self, agents: list[Agent], timeout: float = 30.0, *, keep: int = 120) -> None:
        """Every agent online until its backlog is down to the last seconds' cycles (an agent samples
        until it stops), SIGTERM; what is still in its buffer then is *pending*, not lost."""
        for a in agents:
            if a.proc is None:
                self.start(a, armed=a.buffer.exists())
            self.online(a, True)
        deadline = time.monotonic() + timeout
        waiting = list(agents)
        while waiting and time.monotonic() < deadline:
            time.sleep(0.5)
            waiting = [a for a in waiting if not 0 <= a.backlog() <= keep]
        if waiting:
            self.fig.notes.append("backlog not drained in time: "
                                  + ", ".join(f"{a.name} {a.backlog()}" for a in waiting))
        for a in agents:
            self.stop(a)
            self.pending |= buffered_contents(a.buffer)

    def close(self) -> None:
        for a in self.agents.values():
            if a.proc is not None:
                with contextlib.suppress(Exception):
                    a.stop(signal.SIGKILL)
        for p in self.proxies.values():
            p.stop()

    def verify(self, store: Any, offset_ms: int, shows: Shows) -> FaultFigures:
        self.fig.agents = len(self.agents)
        check(self.fig, self.truth.of(), store, self.node_id, offset_ms, self.pending, self.destroyed)
        self.fig.node_list, self.fig.node_list_visible = node_list(self.db_url, self.node_id, shows.columns)
        texts = []
        for a in self.agents.values():
            rc, text = a.status()
            texts.append(f"{a.name} (exit {rc}): {text.strip()[:4000]}")
            self.fig.status_visible = self.fig.status_visible or status_visible(text, shows.status)
        self.fig.status_text = "\n".join(texts)
        return self.fig


# ---------------------------------------------------------------- the faults
@dataclass(frozen=True)
class Shows:
    """Where a fault must show: words of `streetnode status --json` keys/values, `node list` columns."""

    status: tuple[str, ...]
    columns: tuple[str, ...]


CLONE = Shows(("conflict", "clash", "identit", "rollback"), ("conflict", "identit"))


def second_pi(run: FaultRun, a: Agent) -> Agent:
    """The Pi "pole-b", with its own board and proxy, booting from a copy of ``a``'s card."""
    b = run.agent("pole-b")
    clone_card(a, b, run.truth)
    b.url = run.proxies["pole-b"].url
    b.write_card()
    return b


def fault_clone_fresh(run: FaultRun) -> Shows:
    """Two Pis from one fresh card image: same node id, key and (empty) state dir, both online."""
    a = run.agent("pole-a")
    a.write_card()
    b = second_pi(run, a)
    run.start(a)
    run.start(b)
    run.sleep(8)
    run.finish([a, b])
    return CLONE


def fault_clone_used(run: FaultRun) -> Shows:
    """A used card (it has uploaded for a while, and holds a backlog) copied into a second Pi."""
    a = run.agent("pole-a")
    a.write_card()
    run.start(a)
    run.sleep(4)
    run.online(a, False)
    run.sleep(1.5)  # a backlog on the card when it is copied
    run.stop(a)
    b = second_pi(run, a)
    run.start(a, armed=True)
    run.start(b, armed=True)
    run.sleep(7)
    run.finish([a, b])
    return CLONE


def fault_rollback(run: FaultRun) -> Shows:
    """The buffer database's files copied while the agent is stopped, put back after a power cut."""
    a = run.agent("pole")
    a.write_card()
    run.start(a)
    run.sleep(3)
    run.stop(a)
    saved = run.dir / "saved"
    saved.mkdir()
    for f in buffer_files(a):
        if f.exists():
            shutil.copy2(f, saved / f.name)
    run.start(a, armed=True)
    run.sleep(5)
    run.online(a, False)
    run.sleep(1)
    run.stop(a, signal.SIGKILL)  # the power cut: the card keeps only the earlier copy
    run.destroyed |= buffered_contents(a.buffer) - buffered_contents(saved / a.buffer.name)
    for f in buffer_files(a):
        f.unlink(missing_ok=True)
        if (saved / f.name).exists():
            shutil.copy2(saved / f.name, f)
    run.start(a, armed=True)
    run.sleep(5)
    run.finish([a])
    # a node that finds the rollback at open renumbers before any conflict: its incident shows it
    return Shows(("conflict", "rollback", "rolled back"), ("conflict", "rollback", "incident"))


def fault_truncate(run: FaultRun) -> Shows:
    """The buffer database truncated at a random point while the agent is stopped (a backlog unsent)."""
    a = run.agent("pole")
    a.write_card()
    run.start(a)
    run.sleep(3)
    run.online(a, False)
    run.sleep(2)
    run.stop(a)  # SIGTERM: the WAL is checkpointed into the database
    run.destroyed |= buffered_contents(a.buffer)  # at most: what survives the cut is stored anyway
    size = a.buffer.stat().st_size
    cut = run.rng.randint(size // 4, size * 3 // 4)
    with open(a.buffer, "r+b") as f:
        f.truncate(cut)
    run.fig.notes.append(f"buffer.db truncated at byte {cut} of {size}")
    run.start(a)
    run.sleep(5)
    run.finish([a])
    return Shows(("lost", "rollback", "corrupt", "quarantin", "replaced"), ("incident", "rollback", "lost"))


def fault_deleted(run: FaultRun) -> Shows:
    """The buffer database and its WAL deleted while the agent is stopped, a backlog unsent."""
    a = run.agent("pole")
    a.write_card()
    run.start(a)
    run.sleep(3)
    run.online(a, False)
    run.sleep(2)
    run.stop(a, signal.SIGKILL)
    run.destroyed |= buffered_contents(a.buffer)
    for f in buffer_files(a):
        f.unlink(missing_ok=True)
    run.start(a)
    run.sleep(5)
    run.finish([a])
    return Shows(("lost", "replaced"), ("incident", "lost"))


def fault_clock_1970(run: FaultRun) -> Shows:
    """No RTC: the emulated clock starts at 1970 (unsynced); the node buffers offline, then goes online."""
    behind = int(time.time()) - 600
    a = run.agent("pole", clock=f"offset_s = {-behind}\nsynced = false")
    a.write_card()
    run.start(a, online=False)
    run.sleep(4)
    run.online(a, True)
    run.sleep(5)
    run.finish([a])
    return Shows(("unsynced", "suspect"), ("clock", "suspect"))


def fault_year_behind(run: FaultRun) -> Shows:
    """The emulated clock is a year behind and reports itself synchronized."""
    a = run.agent("pole", clock=f"offset_s = {-YEAR_S}\nsynced = true")
    a.write_card()
    run.start(a)
    run.sleep(6)
    run.finish([a])
    return Shows(("suspect",), ("clock", "suspect", "incident"))


FAULTS: dict[str, Callable[[FaultRun], Shows]] = {
    "clone_fresh": fault_clone_fresh,
    "clone_used": fault_clone_used,
    "rollback": fault_rollback,
    "truncate": fault_truncate,
    "deleted": fault_deleted,
    "clock_1970": fault_clock_1970,
    "year_behind": fault_year_behind,
}


def run_faults(workdir: Path, db_url: str, names: list[str], *, db_label: str = "sqlite", seed: int = 0,
               scale: float = 1.0, parallel: int = 3,
               log: Callable[[str], None] = print) -> list[FaultFigures]:
    """Start a central, run ``names`` (``parallel`` at a time, each its own node), check each."""
    from concurrent.futures import ThreadPoolExecutor

    from central.store import open_store

    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    central = CentralProcess(db_url, workdir / "central.log")
    central.start()
    port = central.wait_ready(60)
    runs = [FaultRun(n, workdir, port, db_url, db_label=db_label, rng=random.Random(rng.random()),
                     scale=scale) for n in names]
    store = open_store(db_url)
    for r in runs:
        store.add_node(r.node_id, r.key, int(time.time() * 1000))
    store.close()

    def one(r: FaultRun) -> tuple[FaultRun, Shows]:
        t0 = time.monotonic()
        try:
            shows = FAULTS[r.name](r)
        finally:
            r.close()
        r.fig.seconds = time.monotonic() - t0
        return r, shows

    try:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            done = list(pool.map(one, runs))
    finally:
        central.stop()
    store = open_store(db_url)
    figures = []
    try:
        offset = boot_offset_ms()
        for r, shows in done:
            fig = r.verify(store, offset, shows)
            figures.append(fig)
            log(fig.line())
    finally:
        store.close()
    return figures


def table(figures: list[FaultFigures]) -> str:
    out = ["fault figures (acknowledged = readings made durable in an agent's buffer, ground truth)"]
    out += [f.line() for f in figures]
    for f in figures:
        if f.gaps or f.incidents or f.notes or f.lost_ranges:
            out.append(f"  {f.fault}: gaps {f.gaps or '-'}; incidents {f.incidents or '-'}"
                       + (f"; lost {', '.join(f.lost_ranges)}" if f.lost_ranges else "")
                       + (f"; notes {f.notes}" if f.notes else ""))
        out.append(f"  {f.fault}: node list: {f.node_list.splitlines()[-1] if f.node_list else '-'}")
        for alert in f.alerts:
            out.append(f"  {f.fault}: alert {alert[:150]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="#20's faults with real processes, and their figures")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--fault", action="append", choices=sorted(FAULTS), help="(default: every fault)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every stage's length")
    ap.add_argument("--parallel", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="streetnode-faults-"))
    schema = None
    if args.db == "sqlite":
        url = f"sqlite:///{workdir / 'central.db'}"
    else:
        pg = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
        schema = f"sn_faults_{secrets.token_hex(6)}"
        url = f"{pg}?schema={schema}"
    print(f"faults: {args.db}, seed {seed}, work dir {workdir}", flush=True)
    figures = run_faults(workdir, url, args.fault or list(FAULTS), db_label=args.db, seed=seed,
                         scale=args.scale, parallel=args.parallel)
    print(table(figures))
    if args.json:
        print(json.dumps([{k: v for k, v in f.__dict__.items() if k != "status_text"} for f in figures],
                         indent=1))
    if schema is not None:
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return 1 if any(f.lost for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
