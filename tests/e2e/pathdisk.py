"""#21's scenario: the path to the central lies for a while, the SD card goes read-only for a while.

Real processes: `streetnode-central serve`, the fault proxy in between, `streetnode run` on the
emulated rig with its state directory on an ext4 file system on a loop device (``errors=remount-ro``,
as an SD card is mounted). Phases:

1. *normal*: the uplink's bytes per second are measured (the baseline);
2. *path*: the proxy answers every request itself — 403 HTML, 404 JSON, a 200 maintenance page, a
   302 to a captive portal — nothing signed; bytes per second measured;
3. *recovery*: the proxy passes again;
4. *card read-only at runtime*: the kernel's ext4 error path remounts the card read-only under the
   running agent (acks cannot be written, cycles wait in memory); bytes per second measured; then
   SIGTERM (what only memory holds is sent first), the card is checked (``e2fsck``) and mounted
   read-only again (a card bad from boot), the agent started on it, and the card made writable
   while the agent runs;
5. *end*: the agent stops, what is left is drained with the real uploader.

`verify()`: per epoch at the central (the file's epoch 1, and the volatile epochs of what was
uploaded from memory), the stored seqs and the seqs in gaps partition 1..N exactly — the file's N
from the card, a volatile epoch's from what the central has — with no duplicates; the path and
disk incidents reached the central; the uplink bytes per second during each fault stay within 2x
the normal rate.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.e2e.chaos import ROOT, CentralProcess, ChaosError, _env, drain_buffer
from tests.support.faultproxy import FaultProxy

NODE = "pathdisk-1"
SPEED = 60.0
PATH_FAULTS = [
    {"status": 403, "body": "<html><head><title>403 Forbidden</title></head><body>WAF</body></html>"},
    {"status": 404, "body": {"error": "not_found", "message": "no route to /v1/ingest"}},
    {"status": 200, "body": "<html><head><title>Down for maintenance</title></head></html>"},
    {"status": 302, "body": "", "headers": {"Location": "http://portal.example/login"}},
]


@dataclass
class Figures:
    normal_bytes_per_s: float = 0.0
    path_bytes_per_s: float = 0.0
    disk_bytes_per_s: float = 0.0
    normal_requests_per_s: float = 0.0
    path_requests_per_s: float = 0.0
    disk_requests_per_s: float = 0.0
    file_epoch_last_seq: int = 0
    stored: int = 0
    gap_readings: int = 0
    volatile_epochs: int = 0
    volatile_readings: int = 0
    lost: int = 0
    duplicates: int = 0
    overlap: int = 0
    incidents: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> str:
        rows = [(k.replace("_", " "), f"{v:.1f}" if isinstance(v, float) else v)
                for k, v in asdict(self).items()]
        w = max(len(k) for k, _ in rows)
        return "\n".join(["path and disk fault figures", *(f"  {k:<{w}}  {v}" for k, v in rows)])


def _run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise ChaosError(f"{' '.join(cmd)}: exit {res.returncode}: {res.stderr.strip()}")
    return res


class Card:
    """An ext4 image on a (writable) loop device mounted at ``mount``: the node's SD card."""

    def __init__(self, image: Path, mount: Path) -> None:
        self.image, self.mount = image, mount
        self.dev: str | None = None

    def create(self) -> None:
        with open(self.image, "wb") as f:
            f.truncate(64 * 1024 * 1024)
        _run(["mkfs.ext4", "-q", "-F", str(self.image)])
        self.mount.mkdir(parents=True, exist_ok=True)
        self.dev = _run(["losetup", "-f", "--show", str(self.image)]).stdout.strip()
        self.attach("rw")

    def attach(self, mode: str) -> None:
        assert self.dev is not None
        _run(["mount", "-o", f"{mode},errors=remount-ro", self.dev, str(self.mount)])

    def fail(self) -> None:
        """The kernel's own error path: ext4 remounts itself read-only under open files."""
        assert self.dev is not None
        with open(f"/sys/fs/ext4/{os.path.basename(self.dev)}/trigger_fs_error", "w") as f:
            f.write("pathdisk: the card failed\n")

    def repair_read_only(self) -> None:
        """Unmount, check, and mount read-only again: a card that is still bad at the next boot."""
        assert self.dev is not None
        _run(["umount", str(self.mount)])
        _run(["e2fsck", "-f", "-y", self.dev], check=False)  # exit 1: errors corrected
        self.attach("ro")

    def writable(self) -> None:
        _run(["mount", "-o", "remount,rw", str(self.mount)])

    def detach(self) -> None:
        subprocess.run(["umount", "-l", str(self.mount)], capture_output=True, timeout=60)
        if self.dev is not None:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True, timeout=60)


class PathDiskRun:
    def __init__(self, workdir: Path, db_url: str, *, phase_s: float = 8.0) -> None:
        self.dir = Path(workdir)
        self.db_url = db_url
        self.phase_s = phase_s
        self.card = Card(self.dir / "card.img", self.dir / "state")
        self.key = secrets.token_bytes(32)
        self.central = CentralProcess(db_url, self.dir / "central.log")
        self.proxy: FaultProxy | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "agent.log"
        self._log_offset = 0  # where the current agent's lines start
        self.fig = Figures()

    @property
    def buffer_path(self) -> Path:
        return self.card.mount / "buffer.db"

    def _config(self) -> Path:
        kf = self.dir / "node.key"
        kf.write_text(self.key.hex())
        kf.chmod(0o600)
        assert self.proxy is not None
        p = self.dir / "config.toml"
        p.write_text(f"""
[node]
id = "{NODE}"
state_dir = "{self.card.mount}"

[central]
url = "{self.proxy.url}"
key_file = "{kf}"
connect_timeout = "1s"
read_timeout = "2s"

[upload]
interval = "1s"
backoff_initial = "0.2s"
backoff_max = "2s"

[storm]
enabled = false

[[sensors]]
type = "bme280"
name = "weather"
interval = "0.2s"

[[sensors]]
type = "pm25"
name = "air"
interval = "0.2s"

[emulation]
enabled = true
scenario = "calm"
speed = {SPEED}
""")
        return p

    # ------------------------------------------------------------ the agent
    def _start_agent(self) -> None:
        with open(self.log, "ab") as f:
            self.agent = subprocess.Popen([sys.executable, "-m", "node", "--config",
                                           str(self.dir / "config.toml"), "run"], cwd=ROOT, env=_env(),
                                          stdout=subprocess.DEVNULL, stderr=f)
        deadline = time.monotonic() + 30
        while b" running on " not in self.log.read_bytes()[self._log_offset:]:
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise ChaosError(f"agent did not start (log {self.log})")
            time.sleep(0.1)

    def _stop_agent(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGTERM)
        try:
            rc = self.agent.wait(30)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            raise ChaosError("agent did not stop within 30 s of SIGTERM") from None
        if rc != 0:
            raise ChaosError(f"agent exited {rc} after SIGTERM (log {self.log})")
        self.agent = None

    def _measure(self, seconds: float) -> tuple[float, float]:
        """Uplink bytes and requests per second over ``seconds`` (the agent must stay up)."""
        assert self.proxy is not None
        b0, r0 = self.proxy.bytes_up, self.proxy.counts["requests"]
        time.sleep(seconds)
        if self.agent is None or self.agent.poll() is not None:
            raise ChaosError(f"agent died during a phase (log {self.log})")
        return (self.proxy.bytes_up - b0) / seconds, (self.proxy.counts["requests"] - r0) / seconds

    # ------------------------------------------------------------ the run
    def run(self) -> Figures:
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        from central.store import open_store

        store = open_store(self.db_url)
        store.add_node(NODE, self.key, int(time.time() * 1000))
        store.close()
        self.card.create()
        try:
            self.central.start()
            self.proxy = FaultProxy(self.central.wait_ready(), lifetime=3600).start()
            self._config()
            self._start_agent()
            time.sleep(3.0)  # settle: first rounds, TLS-less keep-alive connection up
            s = self.phase_s
            self.fig.normal_bytes_per_s, self.fig.normal_requests_per_s = self._measure(s)
            path = [self._path_fault(fault, s / 2) for fault in PATH_FAULTS]
            self.fig.path_bytes_per_s = sum(b for b, _ in path) / len(path)
            self.fig.path_requests_per_s = sum(r for _, r in path) / len(path)
            self.proxy.set("pass", count=None)
            time.sleep(s)  # recovery: the backlog of the path phase drains
            self.card.fail()
            self.fig.disk_bytes_per_s, self.fig.disk_requests_per_s = self._measure(s)
            self._stop_agent()  # what only memory holds goes out first
            self.card.repair_read_only()
            self._log_offset = self.log.stat().st_size
            self._start_agent()  # on a card that is still read-only
            time.sleep(s)
            self.card.writable()  # and comes back while the agent runs
            time.sleep(s)
            self._stop_agent()
            self._drain()
            self.verify()
        finally:
            if self.agent is not None and self.agent.poll() is None:
                self.agent.kill()
            if self.proxy is not None:
                self.proxy.stop()
            self.central.stop()
            self.card.detach()
        self.fig.seconds = time.monotonic() - t0
        (self.dir / "figures.json").write_text(json.dumps(asdict(self.fig), indent=1))
        return self.fig

    def _path_fault(self, fault: dict[str, object], seconds: float) -> tuple[float, float]:
        assert self.proxy is not None
        self.proxy.set("status", count=None, **fault)  # type: ignore[arg-type]
        return self._measure(seconds)

    def _drain(self) -> None:
        assert self.proxy is not None
        drain_buffer(self.buffer_path, NODE, self.proxy.url, self.key, records_too=True)

    # ------------------------------------------------------------ the proof
    def verify(self) -> None:
        from central.store import open_store
        from node.buffer import SqliteBuffer
        from node.buffer.overflow import VOLATILE_EPOCH_BASE

        text = self.log.read_text(errors="replace")
        problems = []
        if "neither the disk nor the central took" in text:
            problems.append("the agent stopped with readings only memory held (lost)")
        st = SqliteBuffer.inspect(self.buffer_path)
        if st.epoch != 1:
            problems.append(f"the file's epoch is {st.epoch}: the buffer was set aside")
        store = open_store(self.db_url)
        try:
            rows = store.readings(NODE, limit=None)
            total = store.count_readings(NODE)
            gaps = store.gaps(NODE)
            incidents = store.incidents(NODE)
        finally:
            store.close()
        f = self.fig
        f.file_epoch_last_seq = st.last_seq
        stored: dict[int, list[int]] = {}
        for r in rows:
            stored.setdefault(r.epoch, []).append(r.seq)
        covered: dict[int, list[int]] = {}
        for g in gaps:
            if g.count != g.last_seq - g.first_seq + 1:
                problems.append(f"gap count {g.count} does not match its range {g}")
            covered.setdefault(g.epoch, []).extend(range(g.first_seq, g.last_seq + 1))
        f.stored, f.gap_readings = len(rows), sum(len(v) for v in covered.values())
        f.duplicates = total - len({(r.epoch, r.seq) for r in rows}) + sum(
            len(v) - len(set(v)) for v in stored.values())
        for epoch in sorted(set(stored) | set(covered)):
            have, gone = set(stored.get(epoch, [])), set(covered.get(epoch, []))
            f.overlap += len(have & gone) + len(covered.get(epoch, [])) - len(gone)
            if epoch == st.epoch:
                top = st.last_seq
            elif epoch >= VOLATILE_EPOCH_BASE:
                top = max(have | gone)
                f.volatile_epochs += 1
                f.volatile_readings += len(have)
            else:
                problems.append(f"readings of an unexpected epoch {epoch}")
                continue
            missing = set(range(1, top + 1)) - have - gone
            f.lost += len(missing)
            if missing:
                problems.append(f"epoch {epoch}: {len(missing)} seqs neither stored nor in a gap, e.g. "
                                f"{sorted(missing)[:10]}")
            extra = (have | gone) - set(range(1, top + 1))
            if extra:
                problems.append(f"epoch {epoch}: seqs above {top}: {sorted(extra)[:10]}")
        kinds: dict[str, int] = {}
        for i in incidents:
            kinds[i.kind] = kinds.get(i.kind, 0) + 1
        f.incidents = kinds
        for kind in ("upload_path", "upload_path_recovered", "disk_error"):
            if kind not in kinds:
                problems.append(f"no {kind!r} incident reached the central")
        if f.duplicates or f.overlap:
            problems.append(f"{f.duplicates} duplicates, {f.overlap} seqs both stored and in a gap")
        if f.volatile_epochs == 0:
            problems.append("nothing was uploaded from memory while the card was read-only")
        for phase in ("path", "disk"):
            rate = getattr(f, f"{phase}_bytes_per_s")
            if rate > 2 * f.normal_bytes_per_s:
                problems.append(f"uplink during the {phase} fault: {rate:.0f} B/s, more than twice the "
                                f"normal {f.normal_bytes_per_s:.0f} B/s")
        if problems:
            raise ChaosError("path and disk run failed:\n  " + "\n  ".join(problems) + "\n" + f.table())
