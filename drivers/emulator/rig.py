"""`EmulatedRig`: the whole emulated node hardware, driven by a scenario.

* ``rig.bus(n)`` — a `FakeSMBus` with an `EmulatedBME280` at 0x76 and an
  `EmulatedPMSA003I` at 0x12 (the same chips answer on every bus number).
* ``rig.pin_factory`` — a gpiozero MockFactory; ``attach_ranger()``/``attach_rain()`` wire
  the flood ranger and the rain gauge on the configured pins (call them before the drivers
  claim the pins).
* ``rig.truth()`` — the scenario truth now; ``rig.scenario_clock()`` — scenario seconds:
  ``start_s + (clock() - t0) * speed``. Give it to `RainGauge(clock=...)` so debounce and
  rain rates are in scenario time when ``speed`` > 1.
* ``rig.inject(target, fault)`` / ``rig.clear(target=None, fault=None)`` — target is a kind
  ("bme280", "pm25", "flood", "rain") or an I2C address (0x76, "0x12").
* ``rig.wall_time()`` / ``rig.clock_synced()`` — the node's wall clock and its sync state
  per the scenario's ``[clock]`` (the real clock, sync unknown, without one); give them to
  `node.clock.Clock(wall=..., sync=...)`.
* ``rig.play()`` — applies the scenario's fault schedule (``faults`` in its TOML) at the
  scenario time now: injects the windows that started, clears those that ended (only faults
  the schedule itself injected). The rig's daemon thread calls it (``autorun=True``), started
  by the first ``bus()``/``attach_*()``; tests with a manual clock call it themselves.

Rain tips are emitted by ``pump()`` (with contact bounce while ``speed`` <= 100): at most
one tip per call, and only once the scenario clock has moved 1.5 debounce windows past the
previous one, so a debouncing gauge counts every tip. A daemon thread calls ``pump()``
(``autorun=True``); tests with a manual clock call it themselves.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.acoustics import speed_of_sound_m_s
from drivers.emulator.bme280_chip import EmulatedBME280
from drivers.emulator.fakebus import FakeSMBus
from drivers.emulator.pmsa003i_chip import EmulatedPMSA003I
from drivers.emulator.scenarios import Scenario, Truth, scenario

log = logging.getLogger("streetnode.emulator")

BME280_ADDRESS = 0x76
PM25_ADDRESS = 0x12
RANGER_FAULTS = frozenset({"absent", "dead_echo", "out_of_range"})
RAIN_FAULTS = frozenset({"stuck", "out_of_range"})
NO_TARGET_M = 6.5        # what an HC-SR04 reports with nothing in range (~38 ms echo)
CHATTER_MM_H = 2000.0    # out_of_range rain: a chattering reed contact
RANGER_NOISE_CM = 0.3
KINDS = {"bme280": "bme280", "bmp280": "bme280", "pm25": "pm25", "pmsa003i": "pm25",
         "flood": "flood", "ranger": "flood", "rain": "rain"}


class _Ranger:
    def __init__(self, mount_height_cm: float) -> None:
        self.mount_height_cm = mount_height_cm
        self.faults: set[str] = set()
        self.trigger: Any = None


class _Rain:
    def __init__(self, pin: Any, mm_per_tip: float, start_s: float, min_gap_s: float) -> None:
        self.pin, self.mm_per_tip, self.start_s, self.min_gap_s = pin, mm_per_tip, start_s, min_gap_s
        self.emitted = 0
        self.chatter_tips = 0
        self.chatter_from_s = 0.0
        self.last_tip_s = -math.inf
        self.faults: set[str] = set()


class EmulatedRig:
    def __init__(self, scenario: str | Scenario = "calm", *, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, start_s: float = 0.0, seed: int = 0,
                 autorun: bool = True, timing: bool = True, wall: Callable[[], float] = time.time) -> None:
        if speed <= 0:
            raise ValueError("speed: expected a positive number")
        self.scenario = scenario if isinstance(scenario, Scenario) else _scenario(scenario)
        self.speed, self.clock, self.start_s = speed, clock, start_s
        self._wall = wall
        self.autorun = autorun
        # contact bounce takes ~50 µs of real time per edge here; beyond ~100x that is more
        # than a debounce window of scenario time, so fast rigs emit clean tips
        self.bounces = 2 if speed <= 100 else 0
        self._t0 = clock()
        self._rng = random.Random(seed)
        self.bme280 = EmulatedBME280(self.truth, clock=clock, timing=timing, seed=seed)
        self.pm25 = EmulatedPMSA003I(self.truth, clock=clock, seed=seed)
        self._bus = FakeSMBus({BME280_ADDRESS: self.bme280, PM25_ADDRESS: self.pm25})
        self._factory: Any = None
        self.ranger: _Ranger | None = None
        self.rain: _Rain | None = None
        self.lamps: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._played: set[tuple[str, str]] = set()
        for w in self.scenario.faults:  # a bad schedule fails here, not later in the thread
            self._check_fault(w.target, w.fault)

    # ---------------------------------------------------------- time and truth
    def scenario_clock(self) -> float:
        return self.start_s + (self.clock() - self._t0) * self.speed

    def truth(self) -> Truth:
        return self.scenario.at(self.scenario_clock())

    def wall_time(self) -> float:
        """The emulated node's wall clock (s since the epoch): real time + the scenario's offset."""
        plan = self.scenario.clock
        return self._wall() + (plan.at(self.scenario_clock())[0] if plan else 0.0)

    def clock_synced(self) -> bool | None:
        """Whether the emulated wall clock is synchronized (None: unknown)."""
        plan = self.scenario.clock
        return plan.at(self.scenario_clock())[1] if plan else None

    def rain_truth_mm(self) -> float:
        """Rain that fell on the gauge since a RainGauge started listening on its pin (mm)."""
        if self.rain is None:
            return 0.0
        return self.scenario.rain_mm(self.rain.start_s, self.scenario_clock())

    # ---------------------------------------------------------- I2C
    def bus(self, n: int = 1) -> FakeSMBus:
        if self.scenario.faults:
            self._start_thread()
        return self._bus

    # ---------------------------------------------------------- GPIO
    @property
    def pin_factory(self) -> Any:
        if self._factory is None:
            from drivers.emulator.gpio import mock_factory

            self._factory = mock_factory()
        return self._factory

    def _distance_m(self) -> float | None:
        r = self.ranger
        if r is None or r.faults & {"absent", "dead_echo"}:
            return None
        if "out_of_range" in r.faults:
            return NO_TARGET_M
        cm = r.mount_height_cm - self.truth().depth_cm + self._rng.gauss(0.0, RANGER_NOISE_CM)
        return max(cm, 0.0) / 100.0

    def attach_ranger(self, trigger_pin: int, echo_pin: int, mount_height_cm: float) -> None:
        from drivers.emulator.gpio import attach_sonar

        self.ranger = _Ranger(mount_height_cm)
        self.ranger.trigger = attach_sonar(self.pin_factory, trigger_pin, echo_pin, self._distance_m,
                                           self.speed_of_sound_m_s)

    def speed_of_sound_m_s(self) -> float:
        """The speed of sound in the scenario's air now (temperature, humidity, pressure)."""
        truth = self.truth()
        return speed_of_sound_m_s(truth.temperature_c, truth.humidity_pct, truth.pressure_hpa)

    def attach_lamp(self, pin: int, label: str) -> Any:
        """Wire an emulated warning light/siren: each switch is logged with the scenario time and
        the water depth then, and kept in ``rig.lamps[label].switches``."""
        from drivers.emulator.gpio import attach_lamp

        lamp = attach_lamp(self.pin_factory, pin, label, self._lamp_switched)
        self.lamps[label] = lamp
        return lamp

    def _lamp_switched(self, label: str, lit: bool) -> None:
        truth = self.truth()
        log.warning("emulated %s (%s) %s at scenario %.2f h, water %.1f cm", label,
                    self.lamps[label].info.name if label in self.lamps else "?",
                    "ON" if lit else "OFF", truth.t_s / 3600.0, truth.depth_cm)

    def attach_rain(self, pin: int, mm_per_tip: float = 0.2794, debounce_s: float = 0.05) -> None:
        reed = self.pin_factory.pin(pin)
        self.rain = _Rain(reed, mm_per_tip, self.scenario_clock(), min_gap_s=max(1.5 * debounce_s, 1e-6))
        self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            if self.autorun and self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="rig", daemon=True)
                self._thread.start()

    def _due_tips(self, r: _Rain, now_s: float) -> int:
        due = math.floor(self.scenario.rain_mm(r.start_s, now_s) / r.mm_per_tip + 1e-9) - r.emitted
        if "out_of_range" in r.faults:
            chatter = math.floor((now_s - r.chatter_from_s) * CHATTER_MM_H / 3600.0 / r.mm_per_tip)
            due += chatter - r.chatter_tips
        return due

    def pump(self) -> int:
        """Emit the next due rain tip, if any; returns how many tips are still due."""
        from drivers.emulator.gpio import tip

        with self._lock:
            r = self.rain
            if r is None:
                return 0
            now_s = self.scenario_clock()
            if r.pin.function != "input" or r.pin.when_changed is None:
                r.start_s, r.emitted = now_s, 0  # nobody counts yet: rain is measured from here
                return 0
            rain_due = math.floor(self.scenario.rain_mm(r.start_s, now_s) / r.mm_per_tip + 1e-9)
            if "stuck" in r.faults:
                r.pin.drive_low()  # reed held closed: the tips of this rain are lost
                r.emitted = max(r.emitted, rain_due)
                return 0
            r.pin.drive_high()
            due = self._due_tips(r, now_s)
            if due > 0 and now_s - r.last_tip_s >= r.min_gap_s:
                tip(r.pin, bounces=self.bounces)
                r.last_tip_s = now_s
                if r.emitted < rain_due:
                    r.emitted += 1
                else:
                    r.chatter_tips += 1
                due -= 1
            return max(due, 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.play()
            due = self.pump()
            self._stop.wait(0.0005 if due else 0.005)

    # ---------------------------------------------------------- faults
    def play(self) -> None:
        """Apply the scenario's fault schedule at the scenario time now (idempotent)."""
        if not self.scenario.faults:
            return
        want = self.scenario.faults_at(self.scenario_clock())
        with self._lock:
            for target, fault in sorted(want - self._played):
                if self._target(target) == "rain" and self.rain is None:
                    continue  # no gauge wired (yet): nothing to break
                self.inject(target, fault)
                self._played.add((target, fault))
            for target, fault in sorted(self._played - want):
                self.clear(target, fault)
                self._played.discard((target, fault))

    def _check_fault(self, target: int | str, fault: str) -> None:
        kind = self._target(target)
        allowed = {"bme280": self.bme280.FAULTS, "pm25": self.pm25.FAULTS, "flood": RANGER_FAULTS,
                   "rain": RAIN_FAULTS}[kind]
        if fault not in allowed:
            raise ValueError(f"fault {fault!r} does not apply to {kind} "
                             f"(one of {', '.join(sorted(allowed))})")

    def _target(self, target: int | str) -> str:
        if isinstance(target, str) and target.lower().startswith("0x"):
            target = int(target, 16)
        if isinstance(target, int):
            by_addr = {BME280_ADDRESS: "bme280", PM25_ADDRESS: "pm25"}
            if target not in by_addr:
                raise ValueError(f"no emulated chip at 0x{target:02x} (0x76 bme280, 0x12 pm25)")
            return by_addr[target]
        kind = KINDS.get(str(target).lower())
        if kind is None:
            raise ValueError(f"unknown target {target!r} (one of bme280, pm25, flood, rain, 0x76, 0x12)")
        return kind

    def inject(self, target: int | str, fault: str) -> None:
        kind = self._target(target)
        with self._lock:
            if kind == "bme280":
                self.bme280.inject(fault)
            elif kind == "pm25":
                self.pm25.inject(fault)
            elif kind == "flood":
                if fault not in RANGER_FAULTS:
                    raise ValueError(f"fault {fault!r} does not apply to flood "
                                     f"(one of {', '.join(sorted(RANGER_FAULTS))})")
                if self.ranger is None:
                    self.ranger = _Ranger(300.0)
                self.ranger.faults.add(fault)
            else:
                if fault not in RAIN_FAULTS:
                    raise ValueError(f"fault {fault!r} does not apply to rain "
                                     f"(one of {', '.join(sorted(RAIN_FAULTS))})")
                if self.rain is None:
                    raise ValueError("attach_rain() before injecting rain faults")
                if fault == "out_of_range" and "out_of_range" not in self.rain.faults:
                    self.rain.chatter_from_s, self.rain.chatter_tips = self.scenario_clock(), 0
                self.rain.faults.add(fault)

    def clear(self, target: int | str | None = None, fault: str | None = None) -> None:
        kinds = [self._target(target)] if target is not None else ["bme280", "pm25", "flood", "rain"]
        with self._lock:
            for kind in kinds:
                if kind == "bme280":
                    self.bme280.clear(fault)
                elif kind == "pm25":
                    self.pm25.clear(fault)
                else:
                    part = self.ranger if kind == "flood" else self.rain
                    if part is not None:
                        if fault is None:
                            part.faults.clear()
                        else:
                            part.faults.discard(fault)
                    if kind == "rain" and self.rain is not None and "out_of_range" not in self.rain.faults:
                        # a chattering contact leaves its tips counted, not owed
                        self.rain.chatter_tips = 0

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)


def _scenario(name: str) -> Scenario:
    return scenario(name)
