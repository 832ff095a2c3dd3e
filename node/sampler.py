"""Sensors from the config: a plain registry, interval scheduling, fault backoff.

`REGISTRY` maps a config ``type`` to a constructor ``(sensor_cfg, hw) -> driver``;
``hw`` is a `Hardware` (real I2C buses and gpiozero's default pin factory, or
an emulated rig). Drivers (issue #3) store in their constructor and do I/O in
``probe()`` / ``read()``; ``read()`` returns a mapping quantity -> value with
``.flags`` (quantity -> `Quality` bits).

Fault policy: when a sensor that was working fails (its driver raises anything,
or hands back something that is not a mapping of numbers), its channels get one
cycle of FAULT samples (value None) so the gap is visible in the data, and a
``sensor_fault`` incident is recorded; while it is faulted the sensor is
*skipped* (no samples) and re-probed with exponential backoff (1 s doubling to
5 min). A successful probe + read puts it back on its interval. One bad
sensor never stops the others. A value that is not a finite number (NaN from a
driver's arithmetic) is stored as None with FAULT, for that quantity only.

A driver that answers but has no valid value at all (every quantity None: a
ranger that hears no echo) is *not* a device fault: its flagged None samples are
stored on its normal interval (state ``no_data``, one ``sensor_fault`` incident
when it starts), so depth comes back the moment the echo does, not minutes later.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.quality import Quality
from drivers.quality import names as flag_names
from node.model import Sample, unit_of

log = logging.getLogger("streetnode.sampler")

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 300.0


class Hardware(Protocol):
    """Where drivers get their bus and pins."""

    speed: float  # scenario seconds per second (1.0 on real hardware)

    def bus(self, n: int) -> Any: ...
    @property
    def pin_factory(self) -> Any: ...
    def sensor_clock(self) -> float: ...
    def prepare(self, sensor_cfg: Mapping[str, Any]) -> None: ...
    def close(self) -> None: ...


class RealHardware:
    """I2C through `drivers.i2c.open_bus`, GPIO through gpiozero's default pin factory."""

    speed = 1.0
    sensor_clock = staticmethod(time.monotonic)

    def bus(self, n: int) -> Any:
        from drivers.i2c import open_bus

        return open_bus(n)

    @property
    def pin_factory(self) -> Any:
        return None  # gpiozero picks its default (lgpio on a Pi, $GPIOZERO_PIN_FACTORY)

    def prepare(self, sensor_cfg: Mapping[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class EmulatedHardware:
    """The emulated rig of `drivers.emulator`: I2C chips on ``rig.bus(n)``, GPIO on its mock pins."""

    def __init__(self, rig: Any) -> None:
        self.rig = rig
        self.speed = float(rig.speed)
        self.sensor_clock = rig.scenario_clock
        self._prepared: set[str] = set()

    def bus(self, n: int) -> Any:
        return self.rig.bus(n)

    @property
    def pin_factory(self) -> Any:
        return self.rig.pin_factory

    def node_health(self, name: str) -> Any:
        from drivers.emulator.health import EmulatedHealth

        return EmulatedHealth(self.rig.truth, name=name)

    def prepare(self, sensor_cfg: Mapping[str, Any]) -> None:
        t = sensor_cfg["type"]
        key = f"{t}:{sensor_cfg.get('pin')}:{sensor_cfg.get('trigger_pin')}:{sensor_cfg.get('echo_pin')}"
        if key in self._prepared:  # a re-probe or a reload: the emulated device is already wired
            return
        self._prepared.add(key)
        if t == "flood":
            self.rig.attach_ranger(sensor_cfg["trigger_pin"], sensor_cfg["echo_pin"],
                                   mount_height_cm=sensor_cfg["mount_height_cm"])
        elif t == "rain":
            self.rig.attach_rain(sensor_cfg["pin"], mm_per_tip=sensor_cfg["mm_per_tip"],
                                 debounce_s=sensor_cfg["debounce"])

    def close(self) -> None:
        self.rig.close()


# ---------------------------------------------------------------- the registry
def _bme280(cfg: Mapping[str, Any], hw: Hardware) -> Any:
    from drivers.bme280 import BME280

    return BME280(hw.bus(cfg["bus"]), cfg["address"], name=cfg["name"], oversampling=cfg["oversampling"])


def _pm25(cfg: Mapping[str, Any], hw: Hardware) -> Any:
    from drivers.pm25 import PM25

    return PM25(hw.bus(cfg["bus"]), cfg["address"], name=cfg["name"])


def _flood(cfg: Mapping[str, Any], hw: Hardware) -> Any:
    from drivers.flood import FloodRanger

    return FloodRanger(cfg["trigger_pin"], cfg["echo_pin"], mount_height_cm=cfg["mount_height_cm"],
                       max_distance_cm=cfg["max_distance_cm"], pings=cfg["pings"],
                       min_distance_cm=cfg.get("min_distance_cm", 2.0),
                       pin_factory=hw.pin_factory, name=cfg["name"])


def _rain(cfg: Mapping[str, Any], hw: Hardware) -> Any:
    from drivers.rain import RainGauge

    # debounce and rain rate in the hardware's time: scenario time on a time-compressed rig
    return RainGauge(cfg["pin"], mm_per_tip=cfg["mm_per_tip"], debounce_s=cfg["debounce"],
                     pin_factory=hw.pin_factory, name=cfg["name"], clock=hw.sensor_clock)


def _health(cfg: Mapping[str, Any], hw: Hardware) -> Any:
    from drivers.health import NodeHealth

    emulated = getattr(hw, "node_health", None)  # emulated hardware emulates the Pi's health too
    return emulated(cfg["name"]) if emulated is not None else NodeHealth(name=cfg["name"])


REGISTRY: dict[str, Callable[[Mapping[str, Any], Hardware], Any]] = {
    "bme280": _bme280,
    "pm25": _pm25,
    "flood": _flood,
    "rain": _rain,
    "health": _health,
}


def _ranger_warmup(driver: Any) -> float:
    return float(getattr(driver, "pings", 1)) * float(getattr(driver, "ping_interval_s", 0.06)) + 0.05


# types whose driver needs time after probe() before read() has data (the ranger pings in the
# background): probed at open and first read after the warm-up, so they never hold up the
# first durable cycle of the others.
WARMUP: dict[str, Callable[[Any], float]] = {"flood": _ranger_warmup}


def _finite(v: Any) -> float | None:
    """``v`` as a finite float, or None (None, NaN, infinities, anything not a number)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        value = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def round_to(value: float, resolution: float) -> float:
    """``value`` rounded to the channel's wire resolution (no float noise in the digits)."""
    digits = max(0, -math.floor(math.log10(resolution) + 1e-9))
    return round(round(value / resolution) * resolution, digits)


# ---------------------------------------------------------------- one sensor
@dataclass
class Slot:
    name: str
    type: str
    interval: float
    cfg: Mapping[str, Any]
    driver: Any = None
    state: str = "new"  # new, ok, fault
    next_due: float = 0.0
    first_due: float = 0.0  # not before this (warm-up after the first probe)
    backoff: float = BACKOFF_INITIAL_S
    failures: int = 0
    error: str | None = None
    channels: list[str] = field(default_factory=list)
    reads: int = 0
    faults: int = 0
    last_ok: float | None = None  # monotonic

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "state": self.state, "error": self.error,
                "failures": self.failures, "reads": self.reads, "faults": self.faults,
                "retry_in_s": round(max(0.0, self.next_due - now), 1) if self.state == "fault" else None,
                "last_ok_age_s": None if self.last_ok is None else round(now - self.last_ok, 1)}


# a value with one of these flags is no evidence of weather (storm triggers ignore it)
UNTRUSTED = int(Quality.OUT_OF_RANGE | Quality.FAULT | Quality.STUCK)


@dataclass
class Cycle:
    """What one sampling pass produced."""

    samples: list[Sample]
    values: dict[str, float | None]  # quantity -> value of this cycle, None: flagged (storm detector)
    new_faults: list[Slot]
    recovered: list[Slot]


class Sampler:
    """Samples due sensors; re-probes faulted ones with backoff."""

    def __init__(self, sensors: list[Mapping[str, Any]], hw: Hardware, *,
                 registry: Mapping[str, Callable[[Mapping[str, Any], Hardware], Any]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff_initial: float = BACKOFF_INITIAL_S, backoff_max: float = BACKOFF_MAX_S) -> None:
        self._hw = hw
        self._registry = REGISTRY if registry is None else registry
        self._clock = clock
        self._b0, self._bmax = backoff_initial, backoff_max
        self.slots = [Slot(s["name"], s["type"], float(s["interval"]), s, backoff=backoff_initial)
                      for s in sensors if s.get("enabled", True)]
        self.interval_cap: float | None = None  # storm mode: no sensor waits longer than this

    def interval(self, slot: Slot) -> float:
        if self.interval_cap is None or slot.type == "health":
            return slot.interval
        return min(slot.interval, self.interval_cap)

    def open(self) -> None:
        """Build every driver (a type missing from the registry faults only that sensor)."""
        now = self._clock()
        for slot in self.slots:
            slot.next_due = now
            try:
                self._hw.prepare(slot.cfg)
                slot.driver = self._registry[slot.type](slot.cfg, self._hw)
                if slot.type in WARMUP:
                    slot.driver.probe()
                    slot.state = "ok"
                    slot.first_due = now + WARMUP[slot.type](slot.driver)
            except Exception as e:  # a bad sensor never stops the node
                self._fault(slot, now, e)

    def next_due(self) -> float | None:
        return min((max(s.next_due, s.first_due) for s in self.slots), default=None)

    def reschedule(self) -> None:
        """After the interval cap changed: nobody waits longer than the new interval."""
        now = self._clock()
        for s in self.slots:
            if s.state != "fault":
                s.next_due = min(s.next_due, now + self.interval(s))

    def sample(self, now: float | None = None) -> Cycle:
        now = self._clock() if now is None else now
        cycle = Cycle([], {}, [], [])
        for slot in self.slots:
            if slot.next_due > now or slot.first_due > now:
                continue
            self._sample_one(slot, now, cycle)
        return cycle

    def _sample_one(self, slot: Slot, now: float, cycle: Cycle) -> None:
        was = slot.state
        try:
            if slot.driver is None:
                self._hw.prepare(slot.cfg)
                slot.driver = self._registry[slot.type](slot.cfg, self._hw)
            if slot.state not in ("ok", "no_data"):
                slot.driver.probe()
            samples, values = self._convert(slot, slot.driver.read())
        except Exception as e:  # drivers raise DriverError; anything else is a fault too
            self._fault(slot, now, e)
            if not slot.channels and slot.driver is not None:
                slot.channels = [f"{slot.name}.{q}" for q in getattr(slot.driver, "quantities", ())]
            if was in ("ok", "no_data"):
                cycle.new_faults.append(slot)
                cycle.samples += [Sample(ch, None, int(Quality.FAULT)) for ch in slot.channels]
            elif was == "new":
                cycle.new_faults.append(slot)
            return
        cycle.samples += samples
        cycle.values.update(values)
        empty = bool(samples) and all(x.value is None for x in samples)
        if empty and was != "no_data":
            slot.error = "no valid value: " + ", ".join(
                f"{x.channel} {'|'.join(flag_names(x.flags)) or 'none'}" for x in samples)
            log.warning("sensor %s (%s): %s; sampling on", slot.name, slot.type, slot.error)
            cycle.new_faults.append(slot)
        elif was in ("fault", "no_data") and not empty:
            cycle.recovered.append(slot)
            log.info("sensor %s recovered after %d failed attempts", slot.name, slot.failures)
        slot.state = "no_data" if empty else "ok"
        if not empty:
            slot.error, slot.failures = None, 0
        slot.backoff = self._b0
        slot.reads += 1
        slot.last_ok = now if not empty else slot.last_ok
        iv = self.interval(slot)
        slot.next_due += iv  # deadline-driven: no drift
        if slot.next_due <= now:  # fell behind (a slow read, a paused process): skip, don't burst
            slot.next_due = now + iv

    def _convert(self, slot: Slot, m: Any) -> tuple[list[Sample], dict[str, float | None]]:
        """Samples (rounded to the wire resolution) and storm values of one reading. Raises on a
        reading that is not a mapping; a value that is not a finite number is None with FAULT."""
        flags = getattr(m, "flags", {}) or {}
        samples: list[Sample] = []
        values: dict[str, float | None] = {}
        channels = []
        for q, v in m.items():
            ch = f"{slot.name}.{q}"
            channels.append(ch)
            f = int(flags.get(q, 0))
            value = _finite(v)
            if value is None:
                f |= int(Quality.FAULT)
            else:
                value = round_to(value, unit_of(ch)[1])
            samples.append(Sample(ch, value, f))
            values[q] = None if value is None or f & UNTRUSTED else value
        slot.channels = channels
        return samples, values

    def _fault(self, slot: Slot, now: float, e: BaseException) -> None:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if slot.state != "fault":
            log.warning("sensor %s (%s) faulted: %s; retrying with backoff", slot.name, slot.type, msg)
        else:
            log.debug("sensor %s still faulted: %s", slot.name, msg)
        slot.state, slot.error = "fault", msg
        slot.failures += 1
        slot.faults += 1 if slot.failures == 1 else 0
        slot.next_due = now + slot.backoff
        slot.backoff = min(slot.backoff * 2, self._bmax)

    def states(self, now: float | None = None) -> list[dict[str, Any]]:
        now = self._clock() if now is None else now
        return [s.as_dict(now) for s in self.slots]

    def close(self) -> None:
        for s in self.slots:
            if s.driver is not None and hasattr(s.driver, "close"):
                try:
                    s.driver.close()
                except Exception as e:
                    log.debug("closing %s: %s", s.name, e)
            s.driver = None
