"""An emulated storm over a few simulated nodes: readings from the emulator's storm scenario
(drivers/emulator/scenarios/storm.toml, the typhoon over Hanoi), uploaded signed, as nodes would.

Used by the browser test (and its screenshots) and by bench/console.py's page-load figure."""

from __future__ import annotations

import random
from typing import Any

from drivers.emulator import scenario
from node.model import Gap, unit_of
from node.protocol import IngestBatch
from tests.central.helpers import KEY
from tests.console.nodes import health_of

# (node, lat, lon, ward, label, how many hours into the storm the node is now, depth scale)
STORM_NODES = [
    ("hk-0042", 21.0285, 105.8542, "Hoan Kiem", "Dinh Tien Hoang / Le Thai To", 25.0, 1.0),
    ("hk-0017", 21.0336, 105.8500, "Hoan Kiem", "Hang Bong, pole 17", 24.0, 0.7),
    ("bd-0003", 21.0338, 105.8145, "Ba Dinh", "Kim Ma, pole 3", 26.0, 0.4),
    ("dd-0108", 21.0181, 105.8290, "Dong Da", "Ton Duc Thang, pole 108", 23.0, 0.9),
    ("hbt-0220", 21.0090, 105.8580, "Hai Ba Trung", "Bach Mai, pole 220", 22.0, 0.2),
]
CHANNELS = ("flood.depth_cm", "air.pm2_5_ugm3", "weather.temperature_c", "weather.pressure_hpa",
            "rain.rain_rate_mm_h", "node.cpu_temp_c", "node.disk_used_pct")


def storm_readings(now_ms: int, into_storm_h: float, depth_scale: float, hours: float, every_s: int,
                   rng: random.Random) -> list[tuple[str, float, int]]:
    """(channel, value, wall_ms) every ``every_s`` over the last ``hours``, ending at ``now_ms``."""
    story = scenario("storm")
    readings: list[tuple[str, float, int]] = []
    steps = int(hours * 3600 / every_s)
    for step in range(steps, -1, -1):
        wall_ms = now_ms - step * every_s * 1000
        truth = story.at(into_storm_h * 3600 - step * every_s)
        values = {"flood.depth_cm": max(0.0, truth.depth_cm * depth_scale + rng.gauss(0, 0.4)),
                  "air.pm2_5_ugm3": max(0.0, truth.pm2_5_ugm3 + rng.gauss(0, 2)),
                  "weather.temperature_c": truth.temperature_c + rng.gauss(0, 0.1),
                  "weather.pressure_hpa": truth.pressure_hpa + rng.gauss(0, 0.05),
                  "rain.rain_rate_mm_h": max(0.0, truth.rain_rate_mm_h + rng.gauss(0, 1)),
                  "node.cpu_temp_c": 48 + rng.gauss(0, 0.5), "node.disk_used_pct": 23.0}
        readings.extend((channel, round(values[channel], 2), wall_ms) for channel in CHANNELS)
    return readings


def storm_health(node: str, *, storm: bool = True, **extra: Any) -> dict[str, Any]:
    row = next(n for n in STORM_NODES if n[0] == node)
    return health_of(node, location_lat=row[1], location_lon=row[2], location_ward=row[3],
                     location_label=row[4], storm=storm, **extra)


def store_storm(store: Any, now_ms: int, *, hours: float = 30.0, every_s: int = 300, seed: int = 14) -> int:
    """Store the storm's last ``hours`` for every node of `STORM_NODES` as it would have arrived: one
    batch per sampling step, received 2 s after it was measured (straight into the store: a signed
    upload per step would be slow). The first node had an outage 10 h to 7 h ago (its readings
    arrived when it ended: buffered), a gap (evicted readings) and a clock-corrected stretch.
    Returns how many readings were stored."""
    rng = random.Random(seed)
    stored = 0
    for index, (node, *_where, into_h, scale) in enumerate(STORM_NODES):
        store.add_node(node, KEY, now_ms - int(hours * 3_600_000))
        readings = storm_readings(now_ms - every_s * 1000, into_h - every_s / 3600, scale, hours, every_s,
                                  rng)
        gap_at = now_ms - 9 * 3_600_000
        outage_end = now_ms - 7 * 3_600_000
        steps: dict[int, list[tuple[str, float, int]]] = {}
        for reading in readings:
            steps.setdefault(reading[2], []).append(reading)
        seq = 0
        for wall_ms, step in sorted(steps.items()):
            in_outage = index == 0 and now_ms - 10 * 3_600_000 <= wall_ms < outage_end
            corrected = index == 0 and now_ms - 5 * 3_600_000 <= wall_ms < now_ms - 4 * 3_600_000
            rows = [(seq + i, channel, value, 512 if corrected else 0, wall, 1000, "boot-a")
                    for i, (channel, value, wall) in enumerate(step)]
            gaps = []
            if index == 0 and gap_at <= wall_ms < gap_at + every_s * 1000:
                gaps = [Gap(1, 900_000, 900_029, 30, wall_ms, wall_ms + 600_000, "evicted_size")]
            received = outage_end if in_outage else wall_ms + 2000
            batch = IngestBatch(node, 1, received, health=storm_health(node), gaps=gaps,
                                units={c: unit_of(c)[0] for c, _v, _w in step}, rows=rows)
            store.ingest(batch, signature=f"{node}-{seq}", expires_ms=received + 1, now_ms=received)
            seq += len(rows)
            stored += len(rows)
    return stored
