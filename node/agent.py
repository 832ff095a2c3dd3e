"""The daemon: sample -> buffer on one thread, upload on another, never the twain shall wait.

Threads
- *sampling* (the caller of `Agent.run`, the main thread under `streetnode run`):
  deadline-driven; each pass samples the due sensors, commits them in one
  ``buffer.put`` with one clock stamp, feeds the storm detector, applies clock
  corrections, drives the LED, feeds the systemd watchdog (only this thread
  does: a hung loop stops the pings and systemd restarts the process) and writes
  the state file. It sleeps at most `TICK_S`, so a clock step is corrected and a
  stop request honoured within that.
- *upload*: `node.upload_loop.UploadLoop` runs ``Uploader.run_round`` every
  ``upload.interval`` (``storm.upload_interval`` in storm mode) on the monotonic
  clock, back to back while a backlog fills whole rounds; a storm start sends an
  alert round at once (pending until acknowledged). It starts after the first
  cycle is stored or held in memory (a disk bad from boot must not silence the
  node). Before it claims each batch it hands the central's time (learned from any signed answer)
  to the `Clock`, and the corrections that follow land in the buffer at once (`_clock_sync`), so no
  batch is encoded with a time the node knows to be wrong.

Alarms (`node.alarms`): each pass feeds the trusted values of the cycle to every ``[[alarms]]``
rule; a change switches its GPIO output at once (no uplink involved), is stored as a reading
``<alarm>.alarm_on`` in the same cycle, and starts an alert upload round like a storm start. The
first pass stores every alarm's initial state (0), so the central knows it from the start.

`Agent.stop()` (SIGTERM) lets the current cycle finish and commit, gives the
uploader a short grace, closes the buffer and returns; `Agent.reload(cfg)`
(SIGHUP) swaps sensors, storm thresholds, ``[upload]`` and ``[status_led]``, and
names each changed key that takes effect only after a restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.quality import Quality
from node import __version__
from node.alarms import AlarmRule
from node.clock import Clock, save_last_known_good_time
from node.config import Config, config_hash
from node.errors import ConfigError, StorageError
from node.fleet import HealthCheck, local_report
from node.identity import MachineIdentity, adopt_key, copied_from, local_identity, read_key_record
from node.model import Sample, quantity
from node.notify import Notifier, watchdog_interval_s
from node.sampler import UNTRUSTED, EmulatedHardware, Hardware, RealHardware, Sampler
from node.storm import StormDetector
from node.upload_loop import UploadLoop

log = logging.getLogger("streetnode.agent")

TICK_S = 0.5
STATE_FILE = "agent-state.json"
STATE_EVERY_S = 2.0
STATUS_EVERY_S = 5.0
LKG_EVERY_S = 600.0
STOP_GRACE_S = 3.0
STORM_STALE_INTERVALS = 3
STORM_STALE_MIN_S = 5.0
TRIGGER_SENSORS = {"bme280": ("pressure_hpa",), "rain": ("rain_rate_mm_h",), "flood": ("depth_cm",)}
FAULTY = ("fault", "no_data")  # sensor states the LED and the health report show as a fault
UPLOAD_START_S = 5.0  # start the upload thread by then even if no cycle was stored yet
MEMORY_DRAIN_S = 10.0  # at a stop with a refusing disk: time to send what only memory holds
RESTART_SECTIONS = ("central", "buffer", "emulation")  # keys that take effect after a restart


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Atomically replace the state file `streetnode status` reads.

    Plain string paths: a `Path` built every few seconds interns its name and drops it again, which
    churns the interpreter's interned-string table (its regrowths cost the soak +0.5 MiB steps, #22).
    """
    path = os.path.join(state_dir, STATE_FILE)
    tmp = os.path.join(state_dir, f".{STATE_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(state, indent=1, default=str))
    os.replace(tmp, path)


def backlog_health(buffer: Any) -> dict[str, Any]:
    """``backlog_readings`` and ``oldest_reading_age_s`` of the buffer (None when it cannot tell)."""
    try:
        st = buffer.stats()
    except Exception as e:  # health is best effort: a failing buffer is reported elsewhere
        log.debug("buffer stats for health: %s", e)
        return {"backlog_readings": None, "oldest_reading_age_s": None}
    age = None if st.oldest_wall_ms is None else max(0.0, round(time.time() - st.oldest_wall_ms / 1000, 1))
    return {"backlog_readings": st.readings, "oldest_reading_age_s": age}


def buffer_state(buffer: Any) -> dict[str, Any] | None:
    """What the state file keeps of the buffer, so the next start can tell a lost or rolled-back
    file (#20): its id, epoch, top seq, acknowledged seq and epoch segments."""
    try:
        st = buffer.stats()
    except Exception as e:  # best effort, like health
        log.debug("buffer stats for the state file: %s", e)
        return None
    return {"buffer_id": st.buffer_id, "epoch": st.epoch, "top": st.last_seq, "acked": st.acked_seq,
            "segments": [list(p) for p in st.segments], "rolled_back": getattr(buffer, "rolled_back", None),
            "lost": getattr(buffer, "lost", None), "made_on": getattr(buffer, "made_on", None)}


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def build_hardware(cfg: Config, scenario: str | None,
                   clock: Callable[[], float] = time.monotonic) -> Hardware:
    """Real buses and pins, or the emulated rig playing ``scenario`` (None: real hardware)."""
    if scenario is None:
        return RealHardware()
    from drivers.emulator import EmulatedRig

    try:
        rig = EmulatedRig(scenario, speed=cfg.emulation["speed"], clock=clock,
                          start_s=float(cfg.emulation.get("start") or 0.0))
    except ValueError as e:
        raise ConfigError(f"emulation.scenario: {e}") from None
    return EmulatedHardware(rig)


class Agent:
    """``Agent(cfg).run()`` until `stop()`; the parts are built in `start()`, never in here."""

    def __init__(self, cfg: Config, *, scenario: str | None = None, notifier: Notifier | None = None,
                 mono: Callable[[], float] = time.monotonic, clock: Clock | None = None,
                 hardware: Hardware | None = None, registry: dict[str, Any] | None = None,
                 fleet: Any = None, identity: MachineIdentity | None = None) -> None:
        self.cfg = cfg
        self.identity = identity  # this machine (node/identity.py); read in start() when None
        self.fleet = fleet  # node.fleet.Fleet: configuration from the central (None: the file alone)
        self._fleet_pending: tuple[Any, Config] | None = None  # fetched and checked, to apply
        self._check: HealthCheck | None = None
        self.scenario = scenario if scenario is not None else (
            cfg.emulation["scenario"] if cfg.emulation["enabled"] else None)
        self.speed = float(cfg.emulation["speed"]) if self.scenario else 1.0
        self.notifier = notifier or Notifier()
        self._mono = mono
        self.clock = clock or Clock()
        self.clock.suspect_ms = int(cfg.clock["suspect_s"] * 1000)
        self._stamp_lock = threading.Lock()  # a stamp and its put vs. a correction of the buffer
        self._hw = hardware
        self._key = b""
        self._registry = registry
        self.buffer: Any = None
        self.sampler: Sampler | None = None
        self.uploader: Any = None
        self.led: Any = None
        self.alarms = [AlarmRule.from_config(a) for a in cfg.alarms]
        self.alarm_outputs: dict[str, Any] = {}
        self.alarm_output_ok: dict[str, bool] = {}  # the output could be claimed at start
        self._alarm_alert = False  # an alarm changed before the upload thread started
        self._alarms_announced = False
        self.storm = StormDetector(cfg.storm)
        self.storm.stale_after_s = self._storm_stale_after(cfg)
        self._stop = threading.Event()
        self._signalled = False  # SIGTERM/SIGINT seen (`signal_stop`); the loop turns it into `stop()`
        self._reload_cfg: Config | None = None
        self._upload_loop: UploadLoop | None = None
        self._upload_thread: threading.Thread | None = None
        self._run_started: float | None = None
        self._upload_interval = float(cfg.upload["interval"])
        self.started_wall = time.time()
        self.counters = {"cycles": 0, "readings": 0, "not_durable": 0, "put_errors": 0,
                         "corrections": 0, "corrected_readings": 0, "storms": 0, "upload_rounds": 0,
                         "uploaded": 0, "duplicates": 0, "alarm_changes": 0}
        self.first_durable_at: float | None = None
        self.last_round: dict[str, Any] = {}
        self.led_state = "starting"
        self.heartbeat = mono()
        self._last = {"state": -1e9, "status": -1e9, "lkg": -1e9, "wd": -1e9}
        self._wd_every = watchdog_interval_s()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the buffer and build sensors (I/O happens here, not in the constructor)."""
        from node.buffer import SqliteBuffer

        if self.upload_enabled:  # a missing or readable-by-others key stops the start (exit 77)
            from node.keyfile import load_key

            self._key = load_key(self.cfg.central["key_file"])
        try:
            self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"node.state_dir: cannot create {self.cfg.state_dir}: {e.strerror}") from None
        if self.identity is None:
            self.identity = local_identity()
        if self._key:  # the machine that first used this key; a copied card keeps the original's (#20)
            adopt_key(self.cfg.state_dir, self._key, self.identity)
            key_copied = copied_from(read_key_record(self.cfg.state_dir), self.identity)
            if key_copied:
                log.warning("the node key was first used on another machine (%s differs): give this Pi "
                            "its own node id and key (docs/install.md)", ", ".join(key_copied))
        known = (read_state(self.cfg.state_dir) or {}).get("buffer")  # the last start's view (#20)
        self.buffer = SqliteBuffer.from_config(self.cfg, known=known if isinstance(known, dict) else None,
                                               made_on=self.identity.as_dict())
        self.buffer.open()
        copied = copied_from(self.buffer.made_on, self.identity)
        if copied:
            log.warning("the buffer %s was made on another machine (%s differs): a copied card numbers "
                        "like its original; run `streetnode provision` (docs/install.md)",
                        self.buffer.path, ", ".join(copied))
        if self._hw is None:
            self._hw = build_hardware(self.cfg, self.scenario, self._mono)
        self.sampler = self._new_sampler(self.cfg)
        self.sampler.open()
        self._build_led()
        self._build_alarm_outputs()

    def _new_sampler(self, cfg: Config) -> Sampler:
        return Sampler(cfg.sensors, self._hw, clock=self._mono, registry=self._registry,  # type: ignore[arg-type]
                       rising_interval=float(cfg.storm["interval"]))

    def _build_alarm_outputs(self) -> None:
        from drivers.alarm import AlarmOutput

        for a in self.cfg.alarms:
            try:
                prepare = getattr(self._hw, "prepare_output", None)
                if prepare is not None:
                    prepare(a["pin"], a["name"])
                out = AlarmOutput(a["pin"], active_high=a["active_high"], name=a["name"],
                                  pin_factory=self._hw.pin_factory)  # type: ignore[union-attr]
                out.probe()
                self.alarm_outputs[a["name"]] = out
                self.alarm_output_ok[a["name"]] = True
            except Exception as e:  # the rule still runs and its changes are still stored
                self.alarm_output_ok[a["name"]] = False
                log.error("alarm %s: output on GPIO%s unavailable: %s", a["name"], a["pin"], e)
                self._incident("alarm_output", f"{a['name']} GPIO{a['pin']}: {e}")

    def _close_alarm_outputs(self) -> None:
        outputs, self.alarm_outputs = self.alarm_outputs, {}
        for name, out in outputs.items():
            try:
                out.close()
            except Exception as e:
                log.debug("alarm %s close: %s", name, e)

    def _close_led(self) -> None:
        led, self.led = self.led, None
        if led is not None:
            try:
                led.close()
            except Exception as e:
                log.debug("LED close: %s", e)

    def _build_led(self) -> None:
        pin = self.cfg.status_led["pin"]
        if pin is None:
            return
        try:
            from drivers.led import StatusLED

            self.led = StatusLED(pin, active_high=self.cfg.status_led["active_high"],
                                 pin_factory=self._hw.pin_factory)  # type: ignore[union-attr]
            self.led.probe()
        except Exception as e:
            log.warning("status LED on GPIO %s unavailable: %s", pin, e)

    def stop(self) -> None:
        """Ask the loop to finish the current cycle and return (from any thread; a signal handler
        calls `signal_stop` instead)."""
        self._stop.set()
        if self._upload_loop is not None:
            self._upload_loop.stop()

    def signal_stop(self) -> None:
        """`stop()` for a signal handler: set a flag and nothing else; the loop sees it within
        ``TICK_S`` and calls `stop()`.

        The handler runs on the main thread between two bytecodes, possibly inside the loop's own
        ``_stop.wait()`` while that holds the event's lock: ``Event.set()`` there waits for that lock
        forever (a SIGTERM that hung the agent ~1 stop in 300; cpython#126434 is the same for
        multiprocessing). central/workers.py stops on a flag for the same reason.
        """
        self._signalled = True

    def request_reload(self, cfg: Config) -> None:
        self._reload_cfg = cfg

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self._signalled

    def run(self, *, until: Callable[[], bool] | None = None, drain_s: float = 0.0) -> int:
        """The sampling loop; returns 0 after `stop()` (or when ``until()`` is true).

        ``drain_s`` > 0 (the demo): after sampling stops, keep uploading up to that
        long until the backlog is empty.
        """
        if self.sampler is None:
            self.start()
        self.notifier.ready()
        self._run_started = self._mono()
        if self.fleet is not None and self.fleet.trial is not None:  # a restart during a health check
            self._check = HealthCheck(self.fleet.trial["version"], self._run_started,
                                      self.cfg.fleet["health_window"], self.fleet.trial.get("sensors", ()), 0)
        self._status_line(force=True)
        try:
            while not self.stopping and not (until and until()):
                self._pass()
                self._sleep()
        finally:
            self._shutdown(drain_s)
        return 0

    def _sleep(self) -> None:
        nxt = self.sampler.next_due() if self.sampler else None
        wait = TICK_S if nxt is None else min(TICK_S, max(0.0, nxt - self._mono()))
        if wait > 0:
            self._stop.wait(wait)

    # ------------------------------------------------------------ one pass
    def _pass(self) -> None:
        now = self._mono()
        if self._reload_cfg is not None:
            cfg, self._reload_cfg = self._reload_cfg, None
            self._apply(cfg)
        if self.fleet is not None:
            self._fleet_step(now)
        self.clock.poll()
        self._apply_corrections()
        assert self.sampler is not None
        cycle = self.sampler.sample(now)
        for slot in cycle.new_faults:
            self._incident("sensor_fault", f"{slot.name} ({slot.type}): {slot.error}")
        changes_before = self.counters["alarm_changes"]
        alarm_samples = self._alarms(now, cycle.samples)
        if cycle.samples or alarm_samples:
            self._commit(cycle.samples + alarm_samples)
        if self.counters["alarm_changes"] != changes_before:
            self._alarm_upload()
        faulted = [ch for s in self.sampler.slots if s.state in FAULTY for ch in s.channels]
        if faulted:
            self.storm.forget({quantity(ch) for ch in faulted})
        self._storm(now, cycle.values)
        self.heartbeat = self._mono()
        if self._wd_every is not None and self.heartbeat - self._last["wd"] >= self._wd_every:
            self._last["wd"] = self.heartbeat
            self.notifier.watchdog()
        self._update_led()
        if self.heartbeat - self._last["state"] >= STATE_EVERY_S:
            self._last["state"] = self.heartbeat
            self._write_state()
        self._status_line()
        if self.upload_enabled and self._upload_thread is None and (
                self.counters["cycles"] or self.heartbeat - (self._run_started or 0.0) >= UPLOAD_START_S):
            self._start_uploader()  # after the first stored cycle (on disk or held): off the start path

    def _commit(self, samples: list[Sample]) -> None:
        if self.storm.state.active:
            storm = int(Quality.STORM)
            samples = [Sample(s.channel, s.value, s.flags | storm) for s in samples]
        try:
            with self._stamp_lock:  # a correction in between would miss this cycle
                stamp = self.clock.stamp()
                res = self.buffer.put(samples, stamp)
        except Exception as e:  # the buffer keeps what it can; sampling goes on
            self.counters["put_errors"] += 1
            log.error("buffer: cycle of %d readings not stored: %s", len(samples), e)
            return
        n = len(samples)  # a cycle held in memory has no number yet (PutResult -1, -1)
        self.counters["cycles"] += 1
        self.counters["readings"] += n
        if not res.durable:
            self.counters["not_durable"] += n
        elif self.first_durable_at is None:
            self.first_durable_at = time.time()
            log.info("first cycle durable: %d readings (seq %d-%d)", n, res.first_seq, res.last_seq)
        if stamp.synced and self._mono() - self._last["lkg"] >= LKG_EVERY_S:
            self._last["lkg"] = self._mono()
            try:
                save_last_known_good_time(self.cfg.state_dir, stamp.wall_ms)
            except OSError as e:
                log.debug("last known good time not saved: %s", e)

    def _alarms(self, now: float, samples: list[Sample]) -> list[Sample]:
        """Feed the cycle's trusted values to the alarm rules; switch outputs; the changes as
        readings (every alarm's state on the first pass)."""
        values = {s.channel: (None if s.value is None or s.flags & UNTRUSTED else s.value)
                  for s in samples}
        out: list[Sample] = []
        for rule in self.alarms:
            if rule.channel not in values:
                change = None
            else:
                change = rule.observe(now * self.speed, values[rule.channel])
            if change is not None:
                self.counters["alarm_changes"] += 1
                log.warning("alarm %s %s: %s %s (on at >= %g, off below %g)", rule.name,
                            "ON" if rule.on else "OFF", rule.channel, rule.value, rule.on_at,
                            rule.off_below)
                self._switch(rule)
            if change is not None or not self._alarms_announced:
                out.append(Sample(f"{rule.name}.alarm_on", 1.0 if rule.on else 0.0, 0))
        self._alarms_announced = True
        return out

    def _switch(self, rule: AlarmRule) -> None:
        output = self.alarm_outputs.get(rule.name)
        if output is None:
            return
        try:
            output.set(rule.on)
        except Exception as e:
            log.error("alarm %s: cannot switch GPIO%s: %s", rule.name, output.pin, e)

    def _alarm_upload(self) -> None:
        """An alarm changed: tell the central now (as a storm start does)."""
        if self._upload_loop is not None:
            self._upload_loop.alert()
        else:
            self._alarm_alert = True

    def _apply_corrections(self) -> None:
        """Put the clock's corrections into the buffer (sampling thread, and the upload thread
        before each batch); logged once per correction, never for a correction of nothing."""
        with self._stamp_lock:
            for c in self.clock.take_corrections():
                self._apply_correction(c)

    def _apply_correction(self, c: Any) -> None:
        try:
            if c.wrong_base_ms is not None:
                n = self.buffer.rebase_clock(c.boot_id, c.wrong_base_ms, c.true_base_ms,
                                             abs(c.offset_ms) // 2)
            else:
                n = self.buffer.correct_clock(c.boot_id, c.offset_ms, true_base_ms=c.true_base_ms)
        except Exception as e:
            log.error("clock correction of %+d ms not applied: %s", c.offset_ms, e)
            return
        n = int(n or 0)
        self.counters["corrections"] += 1
        self.counters["corrected_readings"] += n
        if c.wrong_base_ms is not None:
            detail = (f"the clock claims NTP sync but is {c.offset_ms:+d} ms off the central's time "
                      f"(bound {self.clock.suspect_ms} ms): treated as unsynchronized, stamps follow the "
                      f"central's time; {n} readings of boot {c.boot_id} moved to it")
            log.warning("clock suspect: %s", detail)
            self._incident("clock_suspect", detail)
        elif n and c.offset_ms:
            log.info("clock %s: %d unsynchronized readings of this boot corrected by %+d ms", c.source, n,
                     c.offset_ms)
        elif n:  # stamped by an earlier process of this boot on another base
            log.info("clock %s: %d unsynchronized readings of an earlier process of this boot put on "
                     "the true time", c.source, n)

    def _clock_sync(self, central_base_ms: int | None) -> None:
        """Upload thread, before each batch is claimed: the central's time (its clock minus our
        boot clock, None until learned) to the clock, and every correction into the buffer now."""
        was = self.clock.state
        self.clock.poll()
        if central_base_ms is not None:
            self.clock.learn_central_base(central_base_ms)
        self._apply_corrections()
        if was == "suspect" and self.clock.state != "suspect":
            log.warning("clock suspect episode over: the clock agrees with the central again (%+d ms)",
                        self.clock.offset_ms or 0)

    def _storm(self, now: float, values: dict[str, float]) -> None:
        ev = self.storm.observe(now * self.speed, values)  # scenario seconds (rates are the rig's)
        if ev is True:
            self.counters["storms"] += 1
            log.warning("storm mode ON (%s): sampling every %gs, alert upload now",
                        ", ".join(f"{k} {self.storm.state.levels[k]:.1f}" for k in self.storm.state.reasons),
                        self.cfg.storm["interval"])
            self._set_storm_intervals(True)
            if self._upload_loop is not None:
                self._upload_loop.alert()
        elif ev is False:
            log.warning("storm mode OFF: back to normal intervals")
            self._set_storm_intervals(False)

    def _storm_stale_after(self, cfg: Config) -> float:
        """Scenario seconds after which a trigger level no valid value refreshed expires: three of
        its slowest sensor's intervals, at least a minute (the scenario runs ``speed`` x faster)."""
        intervals = [float(s["interval"]) for s in cfg.sensors
                     if s["type"] in TRIGGER_SENSORS and s.get("enabled", True)]
        return max(STORM_STALE_MIN_S, STORM_STALE_INTERVALS * max(intervals, default=0.0)) * self.speed

    def _trigger_quantities(self, cfg: Config) -> set[str]:
        return {q for s in cfg.sensors if s["type"] in TRIGGER_SENSORS and s.get("enabled", True)
                for q in TRIGGER_SENSORS[s["type"]]}

    def _set_storm_intervals(self, on: bool) -> None:
        assert self.sampler is not None
        self.sampler.interval_cap = self.cfg.storm["interval"] if on else None
        self.sampler.reschedule()
        iv = self.cfg.storm["upload_interval"] if on else self.cfg.upload["interval"]
        self._upload_interval = float(iv)
        if self._upload_loop is not None:
            self._upload_loop.wake()

    def _incident(self, kind: str, detail: str) -> None:
        try:
            self.buffer.record_incident(kind, detail)
        except Exception as e:
            log.debug("incident not recorded: %s", e)

    # ------------------------------------------------------------ reload
    def _apply(self, cfg: Config, *, live_central: bool = False) -> int | None:
        """Apply ``cfg`` in-process (SIGHUP, or ``live_central`` for the central's configuration,
        whose ``[central]`` keys apply at once: the uploader is rebuilt between rounds). Returns the
        upload settings generation that carries the change (None: no upload thread yet)."""
        old = self.cfg
        rebuild = live_central and cfg.central != old.central
        later = [f"node.{k}" for k in ("id", "state_dir") if cfg.node[k] != old.node[k]]
        for section in RESTART_SECTIONS:
            if live_central and section == "central":
                continue
            new, was = getattr(cfg, section), getattr(old, section)
            later += [f"{section}.{k}" for k in sorted(set(new) | set(was)) if new.get(k) != was.get(k)]
            setattr(cfg, section, was)
        if later:
            log.warning("configuration reload: %s changed; takes effect after a restart", ", ".join(later))
        for key in ("id", "state_dir"):
            cfg.node[key] = old.node[key]
        if cfg.alarms != old.alarms:
            log.warning("configuration reload: alarms changed; takes effect after a restart")
            cfg.alarms = old.alarms
        if cfg.sensors != old.sensors:
            assert self.sampler is not None
            self.sampler.close()
            self.sampler = self._new_sampler(cfg)
            self.sampler.open()
            self.storm.forget(set(self.storm.tracked()) - self._trigger_quantities(cfg))
        self.cfg = cfg
        self.clock.suspect_ms = int(cfg.clock["suspect_s"] * 1000)
        self.storm.stale_after_s = self._storm_stale_after(cfg)
        active = self.storm.state.active
        self.storm.thresholds.update({k: float(cfg.storm[k]) for k in self.storm.thresholds})
        self.storm.enabled = cfg.storm["enabled"]
        self.storm.clear_after, self.storm.clear_ratio = cfg.storm["clear_after"], cfg.storm["clear_ratio"]
        self._set_storm_intervals(active)
        generation = None
        if (cfg.upload != old.upload or live_central) and self._upload_loop is not None:
            generation = self._upload_loop.configure(self._upload_settings(), rebuild=rebuild,
                                                     prompt=live_central)
        if cfg.status_led != old.status_led:
            self._close_led()
            self.led_state = "starting"  # shown again on the new LED at the next pass
            self._build_led()
        logging.getLogger().setLevel(cfg.node["log_level"].upper())
        log.info("configuration reloaded from %s (%d sensors)", cfg.source, len(cfg.sensors))
        return generation

    # ------------------------------------------------------------ configuration from the central
    def _sensor_names(self, states: tuple[str, ...]) -> set[str]:
        return {s.name for s in self.sampler.slots if s.state in states} if self.sampler else set()

    def _fleet_step(self, now: float) -> None:
        """Sampling thread: apply a fetched version, or judge the running health check."""
        pending, self._fleet_pending = self._fleet_pending, None
        if pending is not None:
            version, cfg = pending
            could_sample = self._sensor_names(("ok",))  # the sensors that sampled before
            self.fleet.begin(version, could_sample)  # on disk before it runs: a power cut -> old or new
            generation = self._apply(cfg, live_central=True)
            self._check = HealthCheck(version.version, self._mono(), cfg.fleet["health_window"],
                                      could_sample, generation or 0)
            log.warning("configuration %s from the central applied; health check within %gs",
                        version.version, cfg.fleet["health_window"])
            return
        check = self._check
        if check is None:
            return
        sampled = {s.name: s.last_ok for s in self.sampler.slots} if self.sampler else {}
        verdict = check.verdict(now, sampled)
        if verdict is True:
            self._check = None
            self.fleet.commit()
            log.info("configuration %s healthy: kept", check.version)
        elif verdict:
            self._check = None
            cfg = self.fleet.revert(str(verdict))
            self._apply(cfg, live_central=True)
            self._incident("config_rollback", f"configuration {check.version} reverted to "
                           f"{self.fleet.current.version if self.fleet.current else 'the local file'}: "
                           f"{verdict}")

    def _fleet_after_round(self, res: Any) -> None:
        """Upload thread: feed the health check; fetch a new desired version when the central says."""
        loop = self._upload_loop
        check = self._check
        if check is not None and loop is not None:
            check.upload_round(loop.round_generation, res.batches, res.error)
        if self._fleet_pending is not None or check is not None or not self.fleet.wants(res.config):
            return
        from node import protocol

        answer = self.uploader.transport.post(protocol.CONFIG_PATH, b"{}",
                                              body_headers={"Content-Type": "application/json"})
        if not answer.signed or answer.status != 200:
            why = answer.error or f"HTTP {answer.status}" + ("" if answer.signed else " without a valid "
                                                                "receipt of our central")
            log.warning("configuration %s not fetched: %s", res.config.get("version"), why)
            return
        try:
            self._fleet_pending = self.fleet.prepare(answer.body)
        except ConfigError as e:
            reason = "refused: " + "; ".join(e.problems)
            self.fleet.refuse(answer.body, reason)
            self._incident("config_refused", f"configuration {res.config.get('version')} {reason}")

    # ------------------------------------------------------------ upload thread
    @property
    def upload_enabled(self) -> bool:
        return bool(self.cfg.central["url"])

    def _start_uploader(self) -> None:
        self._upload_loop = UploadLoop(self._make_uploader, interval=lambda: self._upload_interval,
                                       on_round=self._after_round)
        if self._alert_pending or self._alarm_alert:
            self._alarm_alert = False
            self._upload_loop.alert()
        self._upload_thread = threading.Thread(target=self._upload_main, name="upload", daemon=True)
        self._upload_thread.start()

    @property
    def _alert_pending(self) -> bool:
        return self.storm.state.active and self.counters["upload_rounds"] == 0

    def _upload_settings(self) -> Any:
        from node.uploader import UploadSettings

        u = self.cfg.upload
        return UploadSettings(u["max_batch_readings"], u["max_batch_bytes"], u["live_readings"],
                              u["backoff_initial"], u["backoff_max"])

    def _make_uploader(self) -> Any:
        from node.uploader import Uploader

        c, u = self.cfg.central, self.cfg.upload
        up = Uploader(self.buffer, c["url"], self._key, self.cfg.node["id"],
                      max_batch_readings=u["max_batch_readings"], max_batch_bytes=u["max_batch_bytes"],
                      live_readings=u["live_readings"], connect_timeout=c["connect_timeout"],
                      read_timeout=c["read_timeout"], ca_bundle=c["ca_bundle"],
                      backoff_initial=u["backoff_initial"], backoff_max=u["backoff_max"],
                      health=self.health, clock=self.clock.wall,  # one wall clock for stamps and signing
                      boot=self.clock.boot, clock_sync=self._clock_sync)
        self.uploader = up
        return up

    def _upload_main(self) -> None:
        assert self._upload_loop is not None
        try:
            self._upload_loop.run()
        except Exception as e:  # the thread's edge: uploads stop, sampling goes on, status says why
            self.last_round = {"error": f"uploader stopped: {e}"}
            log.error("uploads stopped: %s", e)

    def _after_round(self, res: Any, alert: bool, error: Exception | None) -> None:
        if error is not None:
            log.error("upload round failed: %s", error)
            self.last_round = {"at": time.time(), "error": str(error)}
            return
        self.counters["upload_rounds"] += 1
        self.counters["uploaded"] += res.readings
        self.counters["duplicates"] += res.duplicates
        self.last_round = {"at": time.time(), "readings": res.readings, "live": res.live_readings,
                           "error": res.error, "backlog_empty": res.backlog_empty, "alert": alert}
        if self.fleet is not None:
            try:
                self._fleet_after_round(res)
            except Exception as e:  # configuration is never worth the upload thread
                log.error("configuration from the central: %s: %s", type(e).__name__, e)

    def health(self) -> dict[str, Any]:
        """The health part of every batch (docs/protocol.md "Health keys"): scalars only."""
        faulted = [s.name for s in self.sampler.slots if s.state in FAULTY] if self.sampler else []
        out: dict[str, Any] = {
            "storm": self.storm.state.active, "sensors_faulted": len(faulted),
            "clock_synced": bool(self.clock.synced), "clock_state": self.clock.state,
            "uptime_s": int(time.time() - self.started_wall),
            "readings_sampled": self.counters["readings"], "firmware": f"streetnode {__version__}",
            "config_hash": config_hash(self.cfg),
            "clock_offset_ms": self.uploader.clock_offset_ms if self.uploader is not None else None,
        }
        out.update(backlog_health(self.buffer))
        out.update(self.identity.as_dict() if self.identity is not None else {})  # #20: who sends
        out["buffer_id"] = getattr(self.buffer, "buffer_id", None)
        out.update(self.fleet.report() if self.fleet is not None else local_report())
        location = self.cfg.node.get("location") or {}
        for key in ("lat", "lon", "ward", "label"):
            out[f"location_{key}"] = location.get(key)
        return out

    # ------------------------------------------------------------ LED, state, status
    def _led_target(self) -> str:
        if self.sampler and any(s.state in FAULTY for s in self.sampler.slots):
            return "fault"
        if not self.upload_enabled:
            return "buffering"
        status = self.uploader.status() if self.uploader is not None else {}
        if status.get("consecutive_failures") or status.get("last_success_at") is None:
            return "buffering"
        return "ok"

    def _update_led(self) -> None:
        target = self._led_target()
        if target == self.led_state:
            return
        log.info("status: %s", target)
        self.led_state = target
        if self.led is not None:
            try:
                self.led.show(target)
            except Exception as e:
                log.debug("LED: %s", e)

    def state(self) -> dict[str, Any]:
        now = self._mono()
        up = self.uploader.status() if self.uploader is not None else None
        return {
            "pid": os.getpid(), "node_id": self.cfg.node["id"], "config": self.cfg.source,
            "emulated": self.scenario, "started_at": self.started_wall, "updated_at": time.time(),
            "led": self.led_state, "sensors": self.sampler.states(now) if self.sampler else [],
            "storm": self.storm.state.as_dict(),
            "alarms": [{**rule.as_dict(), "pin": a["pin"],
                        "output": self.alarm_output_ok.get(rule.name, False)}
                       for rule, a in zip(self.alarms, self.cfg.alarms, strict=True)],
            "clock": {"synced": self.clock.synced, "state": self.clock.state,
                      "offset_ms": self.clock.offset_ms, "suspect_s": self.clock.suspect_ms / 1000,
                      "suspect_episodes": self.clock.suspect_episodes, "boot_id": self.clock.boot_id,
                      "last_correction": None if self.clock.last_correction is None else
                      {"offset_ms": self.clock.last_correction.offset_ms,
                       "source": self.clock.last_correction.source}},
            "upload": {"enabled": self.upload_enabled, "last_round": self.last_round, **(up or {})},
            "counters": dict(self.counters),
            "buffer": buffer_state(self.buffer) if self.buffer is not None else None,
            "identity": self.identity.as_dict() if self.identity is not None else None,
            "fleet": {**(self.fleet.report() if self.fleet is not None else local_report()),
                      "config_hash": config_hash(self.cfg), "source": self.cfg.source},
        }

    def _write_state(self) -> None:
        try:
            write_state(self.cfg.state_dir, self.state())
        except OSError as e:
            log.debug("state file not written: %s", e)

    def _status_line(self, force: bool = False) -> None:
        if not self.notifier.enabled or (not force and self._mono() - self._last["status"] < STATUS_EVERY_S):
            return
        self._last["status"] = self._mono()
        self.notifier.status(self.summary())

    def summary(self) -> str:
        try:
            backlog = self.buffer.stats().readings
        except Exception:
            backlog = "?"
        up = self.uploader.status() if self.uploader is not None else {}
        ok = up.get("last_success_at")
        last = "never" if not ok else f"{int(time.time() - ok)}s ago"
        storm = ", STORM" if self.storm.state.active else ""
        storm += "".join(f", ALARM {r.name}" for r in self.alarms if r.on)
        return f"{self.led_state}{storm}: backlog {backlog} readings, last upload {last}"

    # ------------------------------------------------------------ shutdown
    def _drain(self, seconds: float, *, memory_only: bool = False) -> None:
        """Upload until the backlog (or, ``memory_only``, what only memory holds) is empty."""
        deadline = time.monotonic() + seconds

        def left() -> int:
            st = self.buffer.stats()
            return st.overflow_readings if memory_only else st.readings

        while time.monotonic() < deadline and left() > 0:
            if self.uploader.ready():
                # memory holds the newest cycles: one live batch per round, no backfill of the file
                res = self.uploader.run_round(time.monotonic() if memory_only else deadline)
                self.counters["uploaded"] += res.readings
                self.counters["duplicates"] += res.duplicates
            else:
                time.sleep(0.05)

    def _shutdown(self, drain_s: float = 0.0) -> None:
        self.notifier.stopping()
        self.stop()  # a signalled stop (`signal_stop`) becomes a real one here, on the main thread
        t = self._upload_thread
        if t is not None:
            t.join(STOP_GRACE_S)
            if t.is_alive():
                log.warning("an upload was still in flight at shutdown; its readings will be resent")
        if self.sampler is not None:
            self.sampler.close()
        self._close_led()
        self._close_alarm_outputs()
        if self._hw is not None:
            self._hw.close()
        uploader_free = self.uploader is not None and (t is None or not t.is_alive())
        if drain_s > 0 and uploader_free:
            self._drain(drain_s)
        held = self.buffer.stats().overflow_readings if self.buffer is not None else 0
        if held and uploader_free:  # the disk refuses writes: memory is all these readings have
            log.warning("the disk refuses writes: sending the %d readings only memory holds before "
                        "stopping", held)
            self._drain(MEMORY_DRAIN_S, memory_only=True)
        self._write_state()
        if self.uploader is not None and (t is None or not t.is_alive()):
            self.uploader.close()
        if self.buffer is not None:
            self.buffer.close()
            lost = getattr(self.buffer, "held_readings", 0)
            if lost:
                log.error("stopped with %d readings that neither the disk nor the central took: lost", lost)
        c = self.counters
        log.info("stopped: %d readings sampled in %d cycles", c["readings"], c["cycles"])
