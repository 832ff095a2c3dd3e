"""Flood depth from a waterproof ultrasonic ranger (HC-SR04 / JSN-SR04T) looking down.

``depth_cm = mount_height_cm - distance_cm``, the median of the last ``pings`` pings.

gpiozero's DistanceSensor pings in a background thread; with ``partial=False`` its first
``.distance`` blocks until the whole queue is full (~1 s) and with a dead echo line forever;
with ``partial=True`` an empty queue reads as 0 m (a flood up to the sensor!). So this driver
uses the DistanceSensor for trigger/echo timing only: a subclass records every ping result
(including no-echo) in a small ring, and `read()` takes the median of the last ``pings``
results no older than ``max_age_s``, waiting for them at most ``settle_s`` (injected
clock). Reads after the first cost nothing; no-echo and out-of-range are flagged, never mistaken for water.

gpiozero times echoes at a fixed 343.26 m/s; `compensate()` corrects a reading for the speed
of sound in the air of the same cycle (`drivers.acoustics`) and flags it ``COMPENSATED``.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from drivers.acoustics import corrected_distance_cm
from drivers.base import Measurement
from drivers.errors import DriverError, SensorNotFound
from drivers.quality import Quality

QUANTITIES = ("depth_cm", "distance_cm")
DRY_TOLERANCE_CM = 5.0


def depth_measurement(distance_cm: float, mount_height_cm: float, *, flags: int = 0,
                      sensor: str | None = None) -> Measurement:
    """Depth and distance of one ranging; ``flags`` go on both (a depth below the street is
    clamped to 0, and flagged CLAMPED when it is more than the dry tolerance below)."""
    depth = mount_height_cm - distance_cm
    depth_flags = flags
    if depth < 0:
        if depth < -DRY_TOLERANCE_CM:
            depth_flags |= int(Quality.CLAMPED)  # further than the street: mount height wrong?
        depth = 0.0
    return Measurement({"depth_cm": depth, "distance_cm": distance_cm},
                       {"depth_cm": depth_flags, "distance_cm": flags}, sensor=sensor)


def compensate(m: Measurement, mount_height_cm: float, temperature_c: float,
               humidity_pct: float | None = None, pressure_hpa: float | None = None) -> Measurement:
    """``m`` (a `FloodRanger.read`) with distance and depth for the speed of sound in this air,
    flagged ``COMPENSATED``; a reading without a distance (no echo) comes back unchanged."""
    distance = m.get("distance_cm")
    if distance is None or m.flags.get("distance_cm", 0) & int(Quality.FAULT):
        return m
    true_cm = corrected_distance_cm(distance, temperature_c, humidity_pct, pressure_hpa)
    return depth_measurement(true_cm, mount_height_cm, flags=int(Quality.COMPENSATED), sensor=m.sensor)


def _sensor_class() -> type:
    from gpiozero import DistanceSensor

    class RecordingDistanceSensor(DistanceSensor):
        """Records each ping: a distance in m, None for no echo, inf when beyond max."""

        def __init__(self, *args: Any, on_ping: Callable[[float | None], None], **kw: Any) -> None:
            self._on_ping = on_ping
            super().__init__(*args, **kw)

        def close(self) -> None:
            # stop the ping thread before gpiozero closes the trigger pin under it
            queue = getattr(self, "_queue", None)
            if queue is not None and queue.ident is not None:  # never started: nothing to stop
                queue.stop()
            super().close()

        def _read(self) -> float | None:
            value = super()._read()
            if value is None:
                self._on_ping(None)
            elif value >= 1.0:
                self._on_ping(float("inf"))
            else:
                self._on_ping(value * self.max_distance)
            return value

    return RecordingDistanceSensor


class FloodRanger:
    quantities = QUANTITIES

    def __init__(self, trigger_pin: int, echo_pin: int, *, mount_height_cm: float,
                 max_distance_cm: float = 450.0, pings: int = 5, pin_factory: Any = None,
                 name: str = "flood", min_distance_cm: float = 2.0, ping_interval_s: float = 0.06,
                 settle_s: float = 1.0, max_age_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if pings < 1:
            raise ValueError("pings: expected at least 1")
        self.trigger_pin, self.echo_pin, self.name = trigger_pin, echo_pin, name
        self.mount_height_cm, self.max_distance_cm = mount_height_cm, max_distance_cm
        self.min_distance_cm, self.pings = min_distance_cm, pings
        self.pin_factory, self.ping_interval_s, self.settle_s = pin_factory, ping_interval_s, settle_s
        self.max_age_s = max_age_s
        self._clock, self._sleep = clock, sleep
        self._ring: collections.deque[tuple[float, float | None]] = collections.deque(maxlen=pings)
        self._lock = threading.Lock()
        self._sensor: Any = None
        self._pings_seen = 0

    def _on_ping(self, distance_m: float | None) -> None:
        with self._lock:
            self._ring.append((self._clock(), distance_m))
            self._pings_seen += 1

    def probe(self) -> None:
        """Claim the pins and start pinging (no echo is a reading flag, not a probe error)."""
        self.close()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PWMSoftwareFallback: timing is fine for cm
                sensor = _sensor_class()(
                    echo=self.echo_pin, trigger=self.trigger_pin, queue_len=1, partial=True,
                    max_distance=self.max_distance_cm / 100.0, on_ping=self._on_ping,
                    pin_factory=self.pin_factory)
        except Exception as e:  # gpiozero: pin in use, bad pin, no pin factory
            raise SensorNotFound(f"cannot use GPIO{self.trigger_pin}/GPIO{self.echo_pin}: "
                                 f"{type(e).__name__}: {e}", sensor=self.name,
                                 address=f"GPIO{self.trigger_pin}/{self.echo_pin}") from e
        sensor._queue.sample_wait = self.ping_interval_s  # gpiozero fixes 60 ms; hardware needs >= 60 ms
        self._sensor = sensor

    @property
    def pings_seen(self) -> int:
        """Pings answered (or timed out) since probe()."""
        return self._pings_seen

    def _recent(self) -> list[float | None]:
        oldest = self._clock() - self.max_age_s
        with self._lock:
            return [d for t, d in self._ring if t >= oldest]

    def read(self) -> Measurement:
        if self._sensor is None:
            self.probe()
        start = self._clock()
        deadline = start + self.settle_s
        while len(self._recent()) < self.pings and self._clock() < deadline:
            self._sleep(0.005)
        results = self._recent()
        valid = [d * 100.0 for d in results if d is not None and d != float("inf")
                 and d * 100.0 >= self.min_distance_cm]
        need = max(1, (len(results) + 1) // 2) if results else 1
        if len(valid) < need:
            # no echo (dead echo line), or echoes beyond max_distance / inside the blind zone
            return Measurement.failed(QUANTITIES, int(Quality.OUT_OF_RANGE), sensor=self.name)
        return depth_measurement(statistics.median(valid), self.mount_height_cm, sensor=self.name)

    def close(self) -> None:
        sensor, self._sensor = self._sensor, None
        if sensor is not None:
            try:
                sensor.close()
            except Exception as e:  # pragma: no cover - gpiozero teardown
                raise DriverError(f"closing: {e}", sensor=self.name) from e
        with self._lock:
            self._ring.clear()
