"""A realistic, deterministic node backlog for the drain benchmark and tests.

Sensor-like series (diurnal cycles, slow random-walk drifts, sensor noise,
rain events that flood the street), rounded to each channel's resolution from
`node.model.CHANNEL_UNITS`, in sampling cycles as the sampler hands them to the
buffer: every 10 s weather/air/flood/rain (10 readings), every 60 s the node's
health (5 more) — 93,600 readings a day, ~655,000 in 7 days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from node.model import Sample, Stamp, unit_of

CYCLE_S = 10
HEALTH_EVERY = 6  # cycles
BOOT_ID = "5f0c3a9e-8a1b-4d2e-9c7f-1b2a3c4d5e6f"
START_MS = 1_790_000_000_000  # 2026-09-21, a fixed start so runs are comparable
MOUNT_CM = 300.0


def readings_per_day() -> int:
    cycles = 86400 // CYCLE_S
    return cycles * 10 + cycles // HEALTH_EVERY * 5


def _q(channel: str, value: float) -> float:
    res = unit_of(channel)[1]
    digits = max(0, round(-math.log10(res)))
    return round(round(value / res) * res, digits)


def cycles(n_readings: int, *, seed: int = 7, start_ms: int = START_MS,
           synced: bool = True) -> Iterator[tuple[Stamp, list[Sample]]]:
    """Sampling cycles until about ``n_readings`` readings have been produced."""
    rnd = random.Random(seed)
    produced = 0
    drift_t = drift_p = drift_pm = 0.0
    rain_left = 0  # cycles of the current rain event
    rain_rate = 0.0
    depth = 0.0
    rain_total = 0.0
    disk = 31.0
    boot_start = start_ms - 3_600_000
    i = 0
    while produced < n_readings:
        wall = start_ms + i * CYCLE_S * 1000 + rnd.randint(0, 15)  # scheduler jitter
        day = (wall / 1000 % 86400) / 86400 * 2 * math.pi
        drift_t += rnd.gauss(0, 0.003)
        drift_p += rnd.gauss(0, 0.002)
        drift_pm = 0.999 * drift_pm + rnd.gauss(0, 0.3)
        if rain_left == 0 and rnd.random() < 1 / 2000:  # a shower about every 5-6 h
            rain_left = rnd.randint(60, 600)
            rain_rate = rnd.uniform(5, 60)
        tips = 0
        if rain_left:
            rain_left -= 1
            tips = 1 if rnd.random() < rain_rate * CYCLE_S / 3600 / 0.2794 else 0
            depth = min(40.0, depth + rain_rate / 3600 * CYCLE_S * 3)
        else:
            depth = max(0.0, depth - 0.02)
        rain_total += tips * 0.2794
        temp = 28 + 4 * math.sin(day - 2.0) + drift_t + rnd.gauss(0, 0.02)
        pm25 = max(3.0, 38 + 15 * math.sin(2 * day + 1) + drift_pm + rnd.gauss(0, 2))
        samples = [
            Sample("weather.temperature_c", temp),
            Sample("weather.humidity_pct", min(100.0, 78 - 12 * math.sin(day - 2.0) + rnd.gauss(0, 0.1))),
            Sample("weather.pressure_hpa", 1008 + 1.5 * math.sin(2 * day) + drift_p + rnd.gauss(0, 0.02)),
            Sample("air.pm1_0_ugm3", pm25 * 0.68 + rnd.gauss(0, 1)),
            Sample("air.pm2_5_ugm3", pm25),
            Sample("air.pm10_ugm3", pm25 * 1.45 + rnd.gauss(0, 2)),
            Sample("flood.depth_cm", max(0.0, depth + rnd.gauss(0, 0.2)) if depth > 0.3 else 0.0),
            Sample("flood.distance_cm", MOUNT_CM - depth + rnd.gauss(0, 0.3)),
            Sample("rain.rain_mm", tips * 0.2794),
            Sample("rain.rain_rate_mm_h", rain_rate if rain_left else 0.0),
        ]
        if i % HEALTH_EVERY == 0:
            disk += 0.0005
            samples += [
                Sample("node.cpu_temp_c", 47 + 3 * math.sin(day - 2.0) + rnd.gauss(0, 0.5)),
                Sample("node.disk_used_pct", disk),
                Sample("node.load_1m", abs(rnd.gauss(0.15, 0.08))),
                Sample("node.uptime_s", (wall - boot_start) // 1000),
                Sample("node.throttled", 0),
            ]
        samples = [Sample(s.channel, _q(s.channel, float(s.value))) for s in samples]
        yield Stamp(wall_ms=wall, boot_ms=wall - boot_start, boot_id=BOOT_ID, synced=synced), samples
        produced += len(samples)
        i += 1
