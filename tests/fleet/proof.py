"""The fleet proof (#17): real `streetnode-central serve` and `streetnode run` processes.

`FleetRun(workdir, nodes=20).run()` starts one central and N emulated nodes in one group, then:

1. pushes an interval change to the group: every node applies it, passes its health check and
   reports it; the time from push to applied (reported at the central) and to healthy is measured;
2. pushes a layer whose ``central.url`` leads nowhere to every node at once: each node applies it,
   cannot upload, goes back to its last good configuration by itself within ``[fleet]
   health_window`` and reports the failed version when it is back; `config rollback` follows;
3. pushes such a layer again with ``--canary 5%``: the rollout stops after the canary wave and
   names the node and the reason, the other nodes never run it;
4. pushes new intervals while SIGKILLing agents at random moments around the apply (each is
   restarted at once): every killed node's state file names the old or the new version, never a
   mix, and every node converges;
5. stops every node, drains what its buffer still holds, and checks at the central: per node every
   sequence number 1..N of its buffer stored exactly once (0 lost, 0 duplicates).

``python -m tests.fleet.proof [--nodes 20] [--kills 20] [--seed N]`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.chaos import ROOT, CentralProcess, _env, drain_buffer

GROUP = "ward-1"
UPLOAD_S = 3.0  # the nodes' upload interval (the interval push makes it 2 s)
WINDOW_S = 8.0  # [fleet] health_window
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


class ProofError(AssertionError):
    pass


@dataclass
class Figures:
    nodes: int = 0
    applied_s: list[float] = field(default_factory=list)  # push -> the new version reported
    healthy_s: list[float] = field(default_factory=list)  # push -> its health check passed, reported
    reverted_s: list[float] = field(default_factory=list)  # push of a dead URL -> failure reported, back
    rollback_s: list[float] = field(default_factory=list)  # push of a dead URL -> the node reverted (its
    # config_rollback incident's time): fetch + apply + the health window
    canary_stop_s: float = 0.0
    canary_reason: str = ""
    kills: int = 0
    kills_in_trial: int = 0  # the state file said a health check was running
    kill_states: dict[str, int] = field(default_factory=dict)  # "old"/"new" at the kill
    readings: int = 0
    lost: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    def table(self) -> str:
        def span(xs: list[float]) -> str:
            return f"median {statistics.median(xs):.1f} s, max {max(xs):.1f} s" if xs else "-"

        return "\n".join([
            f"nodes: {self.nodes}, upload interval {UPLOAD_S:g} s, health window {WINDOW_S:g} s",
            f"interval push -> applied and reported: {span(self.applied_s)}",
            f"interval push -> health check passed, reported: {span(self.healthy_s)}",
            f"dead central.url push -> node reverted by itself (incident time): {span(self.rollback_s)}",
            f"dead central.url push -> every node back on its last good config, failure reported: "
            f"{span(self.reverted_s)}",
            f"canary 5%: rollout stopped {self.canary_stop_s:.1f} s after the push: {self.canary_reason}",
            f"SIGKILLs around the apply: {self.kills} ({self.kills_in_trial} during a health check); "
            f"state file at the kill: {self.kill_states}",
            f"readings: {self.readings} stored, {self.lost} lost, {self.duplicates} duplicates",
            f"run time: {self.seconds:.0f} s",
        ])


class FleetRun:
    def __init__(self, workdir: Path, *, nodes: int = 20, kills: int = 20, seed: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.n = nodes
        self.kills_wanted = kills
        self.rng = random.Random(seed)
        self.db_url = f"sqlite:///{self.workdir / 'central.db'}"
        self.central = CentralProcess(self.db_url, self.workdir / "central.log")
        self.names = [f"fleet-{i:02d}" for i in range(nodes)]
        self.keys = {name: secrets.token_bytes(32) for name in self.names}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.fig = Figures(nodes=nodes)
        self.store: Any = None
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []

    # ------------------------------------------------------------ processes
    def _dir(self, name: str) -> Path:
        return self.workdir / name

    def _config(self, name: str, url: str) -> Path:
        d = self._dir(name)
        d.mkdir(parents=True, exist_ok=True)
        key = d / "node.key"
        key.write_text(self.keys[name].hex())
        key.chmod(0o600)
        cfg = d / "config.toml"
        cfg.write_text(
            f'[node]\nid = "{name}"\nstate_dir = "{d / "state"}"\n'
            f'[central]\nurl = "{url}"\nkey_file = "{key}"\nconnect_timeout = "1s"\nread_timeout = "3s"\n'
            f'[upload]\ninterval = "{UPLOAD_S:g}s"\nbackoff_initial = "0.5s"\nbackoff_max = "2s"\n'
            '[[sensors]]\ntype = "bme280"\nname = "weather"\ninterval = "1s"\n'
            '[emulation]\nenabled = true\nscenario = "calm"\nspeed = 60\n'
            f'[fleet]\nhealth_window = "{WINDOW_S:g}s"\n')
        return cfg

    def _start(self, name: str) -> None:
        log = open(self._dir(name) / "agent.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "node", "--config", str(self._dir(name) / "config.toml"), "run"],
            cwd=ROOT, env=_env(), stdout=log, stderr=log)
        log.close()

    def _stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    # ------------------------------------------------------------ the central's view
    def _health(self) -> dict[str, dict[str, Any]]:
        """Each node's last reported health (one light query: this is polled)."""
        query = "SELECT node_id, health_json FROM nodes"
        rows = self.store.transaction(lambda tx: tx.execute(query).fetchall())
        return {r[0]: json.loads(r[1]) if r[1] else {} for r in rows}

    def _wait(self, what: str, pred: Any, timeout: float) -> float:
        """Seconds until ``pred(health by node)`` is true; raises after ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred(self._health()):
                return time.monotonic() - t0
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ProofError(f"{name} exited {p.returncode} while waiting for {what} "
                                     f"(log {self._dir(name) / 'agent.log'})")
            time.sleep(0.1)
        raise ProofError(f"timed out after {timeout:g} s waiting for {what}: {self._health()}")

    def _track(self, pred_by_node: Any, timeout: float, what: str, t0: float | None = None) -> list[float]:
        """Per node, seconds from ``t0`` (default: now) until ``pred_by_node(health)`` first held."""
        t0 = time.monotonic() if t0 is None else t0
        seen: dict[str, float] = {}
        while len(seen) < self.n:
            if time.monotonic() - t0 > timeout:
                missing = sorted(set(self.names) - set(seen))
                health = self._health()
                raise ProofError(f"{what}: {len(missing)} nodes not there after {timeout:g} s: "
                                 + "; ".join(f"{m}: {health.get(m)}" for m in missing[:3]))
            for name, h in self._health().items():
                if name not in seen and pred_by_node(h):
                    seen[name] = time.monotonic() - t0
            time.sleep(0.1)
        return sorted(seen.values())

    def _push(self, text: str, canary: float | None = None) -> Any:
        from central.fleet import push

        return push.push(self.store, "group", GROUP, text, author="proof", note="proof",
                         now_ms=int(time.time() * 1000), canary_pct=canary)

    # ------------------------------------------------------------ the run
    def run(self) -> Figures:
        from central.fleet import db
        from central.store import open_store

        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.central.start()
        port = self.central.wait_ready()
        url = f"http://127.0.0.1:{port}"
        self.store = open_store(self.db_url)
        try:
            for name in self.names:
                self.store.add_node(name, self.keys[name], int(time.time() * 1000))
                self.store.transaction(lambda tx, n=name: db.set_group(tx, n, GROUP, int(time.time() * 1000)),
                                       write=True)
                self._config(name, url)
                self._start(name)
            self._wait("every node's first batch", lambda hs: sum(
                1 for h in hs.values() if h.get("config_origin") == "local") == self.n, 180)
            good = self._interval_push()
            good = self._dead_url(good)
            self._canary(good)
            self._kills()
            self._stop_all()
            self._verify(url)
        finally:
            self._stop_all()
            self.central.stop()
            if self.store is not None:
                self.store.close()
        self.fig.seconds = time.monotonic() - started
        return self.fig

    def _interval_push(self) -> str:
        t0 = time.monotonic()
        layer = self._push('[upload]\ninterval = "2s"\n').layer
        label = f"g{layer.id}"
        self.fig.applied_s = self._track(lambda h: h.get("config_version") == label, 60, "interval applied",
                                         t0)
        self.fig.healthy_s = self._track(lambda h: h.get("config_version") == label
                                         and h.get("config_state") == "ok", 60, "interval healthy", t0)
        return label

    def _dead_url(self, good: str) -> str:
        t0, pushed_ms = time.monotonic(), int(time.time() * 1000)
        bad = self._push(f'[upload]\ninterval = "2s"\n[central]\nurl = "{DEAD_URL}"\n').layer
        label = f"g{bad.id}"
        self.fig.reverted_s = self._track(
            lambda h: h.get("config_failed_version") == label and h.get("config_version") == good,
            WINDOW_S + 60, "dead URL reverted", t0)
        for name in self.names:
            done = [i.wall_ms for i in self.store.incidents(name)
                    if i.kind == "config_rollback" and f"configuration {label} " in i.detail]
            if not done:
                raise ProofError(f"{name}: no config_rollback incident for {label}")
            self.fig.rollback_s.append((done[0] - pushed_ms) / 1000)
        out = subprocess.run([sys.executable, "-m", "central.cli", "config", "rollback", "--group", GROUP,
                              "--db", self.db_url], cwd=ROOT, env=_env(), capture_output=True, text=True,
                             timeout=60)
        m = re.search(r"pushed group \S+ version (\d+)", out.stdout)
        if out.returncode != 0 or m is None:
            raise ProofError(f"config rollback: {out.stdout} {out.stderr}")
        back = f"g{m.group(1)}"
        self._track(lambda h: h.get("config_version") == back and h.get("config_state") == "ok", 60,
                    "rolled back")
        return back

    def _canary(self, good: str) -> None:
        from central.fleet import db

        t0 = time.monotonic()
        pushed = self._push(f'[upload]\ninterval = "2s"\n[central]\nurl = "{DEAD_URL}"\n', canary=5.0)
        label = f"g{pushed.layer.id}"
        canaries = pushed.rollout.canaries
        while True:
            rollout = self.store.transaction(lambda tx: db.latest_rollout(tx, GROUP))
            if rollout.state == "stopped":
                break
            if rollout.state == "complete" or time.monotonic() - t0 > WINDOW_S + 60:
                raise ProofError(f"rollout not stopped: {rollout}")
            time.sleep(0.1)
        self.fig.canary_stop_s = time.monotonic() - t0
        self.fig.canary_reason = rollout.reason or ""
        if not any(rollout.reason.startswith(f"node {c}: ") for c in canaries):
            raise ProofError(f"the stop does not name a canary: {rollout.reason}")
        health = self._health()
        others = [n for n in self.names if n not in canaries]
        touched = [n for n in others if label in (health[n].get("config_version"),
                                                  health[n].get("config_failed_version"))]
        if touched or len(canaries) != 1:
            raise ProofError(f"outside the canary wave {canaries}: {touched} ran {label}")
        self._track(lambda h: h.get("config_version") == good and h.get("config_state") == "ok", 60,
                    "canary back on the group's version")

    def _kill_one(self, name: str, delay: float, labels: tuple[str, str]) -> None:
        try:
            self._kill_and_restart(name, delay, labels)
        except BaseException as e:  # raised in the main thread after the join
            with self._lock:
                self._errors.append(e)

    def _kill_and_restart(self, name: str, delay: float, labels: tuple[str, str]) -> None:
        time.sleep(delay)
        p = self.procs[name]
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        try:
            doc = json.loads((self._dir(name) / "state" / "fleet-config.json").read_text())
        except (OSError, ValueError) as e:
            raise ProofError(f"{name}: state file unreadable after SIGKILL: {e}") from None
        current = (doc.get("current") or {}).get("version")
        if current not in labels:
            raise ProofError(f"{name}: state file names {current!r}, neither old nor new {labels}")
        with self._lock:
            self.fig.kills += 1
            self.fig.kills_in_trial += bool(doc.get("trial"))
            which = "new" if current == labels[1] else "old"
            self.fig.kill_states[which] = self.fig.kill_states.get(which, 0) + 1
        self._start(name)

    def _kills(self) -> None:
        old = self._health()[self.names[0]].get("config_version")
        intervals = ["2s", "3s"]
        round_no = 0
        while self.fig.kills < self.kills_wanted:
            round_no += 1
            layer = self._push(f'[upload]\ninterval = "{intervals[round_no % 2]}"\n').layer
            new = f"g{layer.id}"
            victims = self.rng.sample(self.names, k=min(self.n, 6))
            threads = [threading.Thread(target=self._kill_one, args=(v, self.rng.uniform(0, 2 * UPLOAD_S),
                                                                    (old, new))) for v in victims]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if self._errors:
                raise self._errors[0]
            self._track(lambda h, want=new: h.get("config_version") == want and h.get("config_state") == "ok",
                        120, f"kill round {round_no} converged")
            old = new

    def _verify(self, url: str) -> None:
        from node.buffer import SqliteBuffer

        for name in self.names:
            path = self._dir(name) / "state" / "buffer.db"
            drain_buffer(path, name, url, self.keys[name])
            st = SqliteBuffer.inspect(path)
            stored = self.store.seqs(name, st.epoch)
            total = self.store.count_readings(name)
            self.fig.readings += total
            self.fig.lost += len(set(range(1, st.last_seq + 1)) - set(stored))
            self.fig.duplicates += (len(stored) - len(set(stored))) + (total - len(set(stored)))
            if st.epoch != 1 or self.store.gaps(name):
                raise ProofError(f"{name}: epoch {st.epoch}, gaps {self.store.gaps(name)}")


def main(argv: list[str] | None = None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(prog="python -m tests.fleet.proof")
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleet-proof-") as d:
        fig = FleetRun(Path(d), nodes=args.nodes, kills=args.kills, seed=args.seed).run()
    print(fig.table())
    return 0 if fig.lost == 0 and fig.duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
