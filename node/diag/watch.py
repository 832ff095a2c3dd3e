"""Watching a sensor for a few seconds: what one reading cannot show (stuck values, a chattering reed).

The daemon judges over minutes (a PM frame frozen for 10 s, a reed closed for 60 s, the rain rate
over 10 minutes); diag has a few seconds, so it builds the same drivers with windows to match:

* BME280: 5 conversions back to back; the same raw ADC bytes 5 times is STUCK (the driver's rule).
* PMSA003I: reads for 2.5 s; the sensor sends a new frame every second or so (its particle
  counts always move), so one frame for 3 reads over 2 s is STUCK.
* rain gauge: 2 s; the reed closed for all of it is STUCK (a tip closes it for ~0.1 s), and 3 or
  more tips at over 400 mm/h (no rain falls that fast) is a chattering contact: OUT_OF_RANGE.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

BME280_READS = 5
PM_WATCH_S, PM_READ_EVERY_S = 2.5, 0.5
RAIN_WATCH_S = 2.0
RAIN_MIN_TIPS = 3


def build_sensor(cfg: Mapping[str, Any], hw: Any) -> Any:
    """The daemon's driver (its registry), with diag's short windows where they differ."""
    stype = cfg["type"]
    if stype == "pm25":
        from drivers.pm25 import PM25

        return PM25(hw.bus(cfg["bus"]), cfg["address"], name=cfg["name"], stuck_reads=3, stuck_after_s=2.0)
    if stype == "rain":
        from drivers.rain import RainGauge

        return RainGauge(cfg["pin"], mm_per_tip=cfg["mm_per_tip"], debounce_s=cfg["debounce"],
                         pin_factory=hw.pin_factory, name=cfg["name"], clock=hw.sensor_clock,
                         stuck_after_s=RAIN_WATCH_S * 0.75 * getattr(hw, "speed", 1.0))
    from node.sampler import REGISTRY

    return REGISTRY[stype](cfg, hw)


def watch(stype: str, driver: Any, hw: Any, *, sleep: Any = time.sleep) -> Any:
    """The last measurement after watching ``driver`` (probed) for its type's window."""
    if stype == "bme280":
        m = driver.read()
        for _ in range(BME280_READS - 1):
            m = driver.read()
        return m
    if stype == "pm25":
        m = driver.read()
        for _ in range(int(PM_WATCH_S / PM_READ_EVERY_S)):
            sleep(PM_READ_EVERY_S)
            m = driver.read()
        return m
    if stype == "rain":
        return _watch_rain(driver, hw, sleep)
    return driver.read()


def _watch_rain(driver: Any, hw: Any, sleep: Any) -> Any:
    from drivers.quality import Quality
    from drivers.rain import MAX_PLAUSIBLE_MM_H

    clock = hw.sensor_clock
    driver.read()  # from here on
    t0 = clock()
    sleep(RAIN_WATCH_S)
    m = driver.read()
    elapsed_s = max(clock() - t0, 1e-3)
    tips = round(m["rain_mm"] / driver.mm_per_tip)
    rate_mm_h = m["rain_mm"] * 3600.0 / elapsed_s
    if tips >= RAIN_MIN_TIPS and rate_mm_h > MAX_PLAUSIBLE_MM_H:
        flags = {q: f | Quality.OUT_OF_RANGE for q, f in m.flags.items()}
        values = {**m, "rain_rate_mm_h": rate_mm_h}
        return type(m)(values, flags, sensor=m.sensor)
    return m
