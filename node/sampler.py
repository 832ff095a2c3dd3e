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

Flood depth (`_derive`): a ranger's reading is corrected for the speed of sound with the
temperature, humidity and pressure its air sensor (``air_sensor``, else the first BME280) read
*in the same cycle* — when a ranger is due its air sensor is sampled with it, first — and flagged
``COMPENSATED``; without a valid air reading it goes out uncorrected (no flag). Then the spike
filter and the rate of rise (`node.depth`): ``<ranger>.rise_cm_10min`` is its own channel, and
once it reaches the ranger's ``rising_cm_10min`` the ranger samples at the storm interval
(``rising_interval``) whatever its own interval is, until it falls below half of it.
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
from node.depth import DepthFilter
from node.model import UNTRUSTED, Sample, unit_of

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

    def prepare_output(self, pin: int, label: str) -> None:
        """An emulated warning light on ``pin`` (logged by the rig when it switches)."""
        key = f"output:{pin}"
        if key not in self._prepared:
            self._prepared.add(key)
            self.rig.attach_lamp(pin, label)

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
    cap: float | None = None  # a ranger while the water rises: no longer than this
    depth_filter: DepthFilter | None = None
    air: str | None = None  # a ranger's air sensor (speed of sound)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "state": self.state, "error": self.error,
                "failures": self.failures, "reads": self.reads, "faults": self.faults,
                "retry_in_s": round(max(0.0, self.next_due - now), 1) if self.state == "fault" else None,
                "last_ok_age_s": None if self.last_ok is None else round(now - self.last_ok, 1)}


RISING_CLEAR_RATIO = 0.5  # a ranger sampling fast for rising water slows down below half the threshold

@dataclass
class Cycle:
    """What one sampling pass produced."""

    samples: list[Sample]
    values: dict[str, float | None]  # quantity -> value of this cycle, None: flagged (storm detector)
    new_faults: list[Slot]
    recovered: list[Slot]
    air: dict[str, dict[str, float | None]] = field(default_factory=dict)  # air sensor -> its values


class Sampler:
    """Samples due sensors; re-probes faulted ones with backoff."""

    def __init__(self, sensors: list[Mapping[str, Any]], hw: Hardware, *,
                 registry: Mapping[str, Callable[[Mapping[str, Any], Hardware], Any]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff_initial: float = BACKOFF_INITIAL_S, backoff_max: float = BACKOFF_MAX_S,
                 rising_interval: float | None = None) -> None:
        self._hw = hw
        self._registry = REGISTRY if registry is None else registry
        self._clock = clock
        self._b0, self._bmax = backoff_initial, backoff_max
        self.slots = [Slot(s["name"], s["type"], float(s["interval"]), s, backoff=backoff_initial)
                      for s in sensors if s.get("enabled", True)]
        self.interval_cap: float | None = None  # storm mode: no sensor waits longer than this
        self.rising_interval = rising_interval  # a ranger while the water rises fast
        self._speed = float(getattr(hw, "speed", 1.0))
        bme280s = [s.name for s in self.slots if s.type == "bme280"]
        for slot in self.slots:
            if slot.type == "flood":
                slot.depth_filter = DepthFilter(float(slot.cfg.get("spike_cm", 15.0)))
                if slot.cfg.get("compensate", True):
                    slot.air = slot.cfg.get("air_sensor") or (bme280s[0] if bme280s else None)

    def interval(self, slot: Slot) -> float:
        if slot.type == "health":
            return slot.interval
        caps = [c for c in (self.interval_cap, slot.cap) if c is not None]
        return min([slot.interval, *caps])

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
        due = [s for s in self.slots if s.next_due <= now and s.first_due <= now]
        for ranger in [s for s in due if s.air is not None]:
            air = next((s for s in self.slots if s.name == ranger.air), None)
            if air is not None and air not in due and air.state in ("ok", "no_data"):
                air.next_due = now  # the same cycle's air for the speed of sound
                due.append(air)
        for slot in sorted(due, key=lambda s: s.type == "flood"):  # rangers last: air and rain first
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
            reading = slot.driver.read()
            if slot.depth_filter is not None:
                reading = self._derive(slot, reading, cycle, now)
            samples, values = self._convert(slot, reading)
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
        if slot.type == "bme280":
            cycle.air[slot.name] = values
        if "rain_rate_mm_h" in values:
            for ranger in self.slots:
                if ranger.depth_filter is not None:
                    ranger.depth_filter.rain(now * self._speed, values["rain_rate_mm_h"])
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

    def _derive(self, slot: Slot, m: Any, cycle: Cycle, now: float) -> Any:
        """A ranger's reading corrected for this cycle's air, spike-flagged, with its rise."""
        from drivers.base import Measurement
        from drivers.flood import compensate

        air = cycle.air.get(slot.air) if slot.air is not None else None
        height = slot.cfg.get("mount_height_cm")
        if air and air.get("temperature_c") is not None and height is not None:
            m = compensate(m, float(height), air["temperature_c"],
                           air.get("humidity_pct"), air.get("pressure_hpa"))
        depth = _finite(m.get("depth_cm"))
        flags = dict(getattr(m, "flags", {}) or {})
        if depth is None or flags.get("depth_cm", 0) & UNTRUSTED:
            return m
        assert slot.depth_filter is not None
        verdict = slot.depth_filter.observe(now * self._speed, depth)
        values = dict(m)
        if verdict.spike:
            for q in ("depth_cm", "distance_cm"):
                flags[q] = flags.get(q, 0) | int(Quality.SPIKE)
        if verdict.rise_cm_10min is not None:
            values["rise_cm_10min"] = verdict.rise_cm_10min
            flags["rise_cm_10min"] = 0
        self._follow_the_water(slot, verdict.rise_cm_10min, now)
        return Measurement(values, flags, sensor=getattr(m, "sensor", None))

    def _follow_the_water(self, slot: Slot, rise: float | None, now: float) -> None:
        """While the water rises faster than ``rising_cm_10min`` the ranger samples faster."""
        threshold = slot.cfg.get("rising_cm_10min")
        if rise is None or threshold is None or self.rising_interval is None:
            rising = False
        elif slot.cap is None:
            rising = rise >= float(threshold)
        else:  # hysteresis: noise around the threshold does not flap the interval
            rising = rise >= RISING_CLEAR_RATIO * float(threshold)
        cap = self.rising_interval if rising else None
        if cap == slot.cap:
            return
        slot.cap = cap
        if cap is not None:
            log.warning("%s: water rising %.1f cm/10 min: sampling every %gs", slot.name, rise, cap)
            slot.next_due = min(slot.next_due, now + cap)
        else:
            log.info("%s: water no longer rising fast: back to every %gs", slot.name, self.interval(slot))

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
