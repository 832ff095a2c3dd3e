"""`streetnode demo`: the whole system on one machine, no hardware, no setup.

A real `streetnode-central` receiver (in-process, 127.0.0.1, free port,
temporary SQLite store, a fresh node key) and the real agent loop on the
emulated rig playing the storm scenario, time-compressed so the storm passes
within the run. In the middle the central goes down for a stretch (the node
buffers; the LED state shows it) and comes back on the same port (newest
first, then backfill). At the end the agent stops like on SIGTERM, the backlog
drains, and the buffer's record of everything sampled is compared with the
central's store: exit 0 only if every sampled reading is there exactly once.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from node import config

NODE_ID = "demo-node"


@dataclass
class Summary:
    sampled: int = 0
    stored: int = 0
    duplicates_stored: int = 0
    resends_deduplicated: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)
    unexpected: int = 0
    gaps_reported: int = 0
    storms: int = 0
    outage_s: float = 0.0
    backlog_peak: int = 0
    corrected: int = 0
    elapsed_s: float = 0.0
    sensors: str = ""

    @property
    def exactly_once(self) -> bool:
        return (self.sampled > 0 and self.sampled == self.stored and self.duplicates_stored == 0
                and not self.missing and not self.unexpected)


def demo_config(tmp: Path, url: str, key: bytes, *, speed: float, duration: float) -> config.Config:
    key_file = tmp / "node.key"
    key_file.write_text(key.hex() + "\n")
    key_file.chmod(0o600)
    fast = max(0.2, min(1.0, duration / 60))
    text = f"""
[node]
id = "{NODE_ID}"
state_dir = "{tmp / 'state'}"
log_level = "error"

[central]
url = "{url}"
key_file = "{key_file}"
connect_timeout = "1s"
read_timeout = "3s"

[[sensors]]
type = "bme280"
name = "weather"
interval = "{fast:g}s"

[[sensors]]
type = "pm25"
name = "air"
interval = "{fast:g}s"

[[sensors]]
type = "flood"
name = "flood"
trigger_pin = 23
echo_pin = 24
mount_height_cm = 300
interval = "{fast:g}s"

[[sensors]]
type = "rain"
name = "rain"
pin = 17
interval = "{fast:g}s"

[[sensors]]
type = "health"
name = "node"
interval = "{5 * fast:g}s"

[status_led]
pin = 27

[upload]
interval = "2s"
live_readings = 200
backoff_initial = "0.5s"
backoff_max = "2s"

[storm]
interval = "{fast / 2:g}s"
upload_interval = "1s"
clear_after = "30m"

[emulation]
enabled = true
scenario = "storm"
speed = {speed:g}
"""
    path = tmp / "config.toml"
    path.write_text(text)
    return config.load(path)


class Progress:
    """A redrawn line on a TTY, plain lines every few seconds when piped."""

    def __init__(self, out: TextIO, duration: float) -> None:
        self.out, self.duration = out, duration
        self.tty = out.isatty()
        self._last_plain = -1e9
        self._width = 0

    def event(self, t: float, text: str) -> None:
        self._clear()
        self.out.write(f"[{t:5.1f}s] {text}\n")
        self.out.flush()

    def update(self, t: float, line: str) -> None:
        if self.tty:
            n = 24
            done = min(n, int(n * t / self.duration))
            bar = "#" * done + "." * (n - done)
            text = f"\r[{bar}] {t:4.0f}s {line}"
            pad = max(0, self._width - len(text))
            self.out.write(text + " " * pad)
            self._width = len(text)
            self.out.flush()
        elif t - self._last_plain >= 5:
            self._last_plain = t
            self.out.write(f"[{t:5.1f}s] {line}\n")
            self.out.flush()

    def _clear(self) -> None:
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self._width = 0

    def done(self) -> None:
        self._clear()


def run_demo(duration: float = 60.0, out: TextIO = sys.stdout, *,
             mono: Callable[[], float] = time.monotonic) -> Summary:
    from central import require_extra

    require_extra("streetnode demo")
    from central.server import serve_in_thread
    from central.store import open_store
    from drivers.emulator import EmulatedRig, scenario
    from node.agent import Agent
    from node.sampler import EmulatedHardware

    logging.getLogger().setLevel(logging.ERROR)
    active = duration * 0.85  # sampling time; the rest is drain and comparison
    storm_s = scenario("storm").duration_s
    speed = storm_s / (active * 0.9)
    prog = Progress(out, duration)
    s = Summary()
    with tempfile.TemporaryDirectory(prefix="streetnode-demo-") as td:
        tmp = Path(td)
        store = open_store(f"sqlite:///{tmp / 'central.db'}")
        key = secrets.token_bytes(32)
        store.add_node(NODE_ID, key, int(time.time() * 1000))
        url, stop_central = serve_in_thread(store, host="127.0.0.1", port=0)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        cfg = demo_config(tmp, url, key, speed=speed, duration=duration)
        rig = EmulatedRig("storm", speed=speed, clock=mono)
        agent = Agent(cfg, scenario="storm", hardware=EmulatedHardware(rig), mono=mono)
        agent.start()
        s.sensors = ", ".join(f"{sl.name} ({sl.type})" for sl in agent.sampler.slots)  # type: ignore[union-attr]
        out.write(f"streetnode demo: central at {url} (temporary SQLite), node {NODE_ID} on emulated "
                  f"hardware: {s.sensors}\nstorm scenario ({storm_s / 3600:g} h) compressed x{speed:.0f} "
                  f"into {active:.0f}s; the central goes down from {0.35 * active:.0f}s to "
                  f"{0.6 * active:.0f}s\n")
        t0 = mono()
        runner = threading.Thread(target=agent.run, kwargs={"drain_s": max(8.0, duration * 0.15)},
                                  name="agent", daemon=True)
        runner.start()
        phase, down_at, storm_seen, led = "up", 0.0, False, "starting"
        seen_round: object = None
        while runner.is_alive():
            t = mono() - t0
            if phase == "up" and t >= 0.35 * active:
                stop_central()
                phase, down_at = "down", t
                prog.event(t, "central DOWN: the node keeps sampling into its SD-card buffer")
            elif phase == "down" and t >= 0.6 * active:
                url2, stop_central = serve_in_thread(store, host="127.0.0.1", port=port)
                phase = "back"
                s.outage_s = t - down_at
                prog.event(t, f"central UP again at {url2}: newest readings first, then backfill")
            if t >= active and not agent.stopping:
                prog.event(t, "stopping the agent (as on SIGTERM), draining the backlog")
                agent.stop()
            r = agent.last_round
            if phase == "back" and r is not seen_round and r.get("readings"):
                seen_round = r  # the first round after the outage: the live batch, then backfill
                phase = "caught up"
                prog.event(t, f"first round after the outage: {r.get('live', 0)} newest readings first "
                           f"(live), then {r['readings'] - r.get('live', 0)} backfilled oldest-first")
            backlog = _backlog(agent)
            s.backlog_peak = max(s.backlog_peak, backlog)
            if agent.storm.state.active != storm_seen:
                storm_seen = agent.storm.state.active
                st = agent.storm.state
                why = ", ".join(f"{r} {st.levels.get(r, 0):.1f}" for r in st.reasons)
                prog.event(t, f"STORM mode ON: {why} -> faster sampling, alert upload" if storm_seen else
                           "storm mode OFF (hysteresis cleared): normal intervals")
            if agent.led_state != led:
                led = agent.led_state
                prog.event(t, f"LED: {led}")
            c = agent.counters
            up = "DOWN" if phase == "down" else "up"
            prog.update(t, f"sampled {c['readings']}  at central {store.count_readings(NODE_ID)}  "
                        f"backlog {backlog}  LED {agent.led_state}  central {up}"
                        + ("  STORM" if agent.storm.state.active else ""))
            time.sleep(0.2)
        runner.join()
        prog.done()
        s.elapsed_s = mono() - t0
        _compare(s, agent, store)
        stop_central()
        store.close()
    return s


def _backlog(agent: Any) -> int:
    try:
        return int(agent.buffer.stats().readings)
    except Exception:
        return 0


def _compare(s: Summary, agent: Any, store: Any) -> None:
    c = agent.counters
    s.sampled, s.storms = c["readings"], c["storms"]
    s.resends_deduplicated = c["duplicates"]
    s.corrected = c["corrected_readings"]
    epoch = agent.buffer.epoch
    seqs = store.seqs(NODE_ID, epoch)
    s.stored = len(seqs)
    uniq = set(seqs)
    s.duplicates_stored = len(seqs) - len(uniq)
    expected = set(range(1, s.sampled + 1))
    s.unexpected = len(uniq - expected)
    missing = sorted(expected - uniq)
    runs: list[tuple[int, int]] = []
    for q in missing:
        if runs and runs[-1][1] == q - 1:
            runs[-1] = (runs[-1][0], q)
        else:
            runs.append((q, q))
    s.missing = runs
    s.gaps_reported = len(store.gaps(NODE_ID))


def render(s: Summary) -> str:
    lines = [
        "", "summary",
        f"  readings sampled          {s.sampled}",
        f"  stored at the central     {s.stored}",
        f"  duplicates stored         {s.duplicates_stored}",
        f"  resends de-duplicated     {s.resends_deduplicated}  (batches resent after a lost answer)",
        f"  gaps                      {sum(b - a + 1 for a, b in s.missing)} missing"
        + (f" ({', '.join(f'{a}-{b}' for a, b in s.missing[:5])})" if s.missing else "")
        + f", {s.gaps_reported} reported by the node",
        f"  central outage            {s.outage_s:.0f}s, peak backlog {s.backlog_peak} readings",
        f"  storm episodes            {s.storms}",
        f"  clock-corrected readings  {s.corrected}",
        f"  run time                  {s.elapsed_s:.0f}s",
        "  result                    " + ("OK: every sampled reading is at the central exactly once"
                                         if s.exactly_once else "FAILED: sampled != stored exactly once"),
    ]
    return "\n".join(lines)


def env_ok() -> bool:
    return os.environ.get("STREETNODE_DEBUG", "") not in ("", "0")
