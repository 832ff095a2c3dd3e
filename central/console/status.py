"""Pure rules of the console: a node's state and the colour bands of flood depth and PM2.5.

States (`node_state`), from the central's own clock and the node's last health report:
- ``silent``: never uploaded, or nothing for ``silent_after_s``;
- ``late``: nothing for ``late_after_s``;
- ``buffering``: uploading, but the node reports its oldest unsent reading older than
  ``buffering_age_s`` (it is catching up after an outage: the data exists and is on its way);
- ``live``: otherwise.

PM2.5 bands: the six VN_AQI categories of Decision 1459/QĐ-TCMT (2019) — Tốt / Trung bình / Kém /
Xấu / Rất xấu / Nguy hại, AQI 0-50-100-150-200-300-500 — reached through the PM2.5 concentration
breakpoints 0, 25, 50, 80, 150, 250, 350, 500 µg/m³ (see docs/central.md for what was verified).
A band of the *latest* value, not the official hourly AQI (a NowCast over 12 hours).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from central.console.config import ConsoleConfig

STATES = ("live", "buffering", "late", "silent")
PM25_BREAKPOINTS = (25.0, 50.0, 80.0, 150.0, 250.0)  # upper bounds of AQI 50, 100, 150, 200, 300
PM25_BANDS = ("good", "moderate", "poor", "bad", "very_bad", "hazardous")
FLOOD_SUFFIX = ".depth_cm"
PM25_SUFFIX = ".pm2_5_ugm3"


def finite(value: Any) -> float | None:
    """A JSON-safe number: None for None, NaN and infinities."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def node_state(now_ms: int, last_seen_ms: int | None, health: dict[str, Any] | None,
               config: ConsoleConfig) -> str:
    if last_seen_ms is None:
        return "silent"
    silence_s = (now_ms - last_seen_ms) / 1000
    if silence_s >= config.silent_after_s:
        return "silent"
    if silence_s >= config.late_after_s:
        return "late"
    oldest = (health or {}).get("oldest_reading_age_s")
    if isinstance(oldest, int | float) and not isinstance(oldest, bool) and oldest >= config.buffering_age_s:
        return "buffering"
    return "live"


def band_index(value: float | None, bounds: Sequence[float]) -> int | None:
    """0 below ``bounds[0]``, 1 from it to below ``bounds[1]``, ... (None for no value)."""
    if value is None:
        return None
    return sum(1 for bound in bounds if value >= bound)


def flood_band(depth_cm: float | None, config: ConsoleConfig) -> int | None:
    return band_index(depth_cm, config.flood_bands_cm)


def pm25_band(ugm3: float | None) -> str | None:
    """The VN_AQI category of a PM2.5 concentration (µg/m³): above 25 is "moderate", and so on."""
    if ugm3 is None:
        return None
    return PM25_BANDS[sum(1 for bound in PM25_BREAKPOINTS if ugm3 > bound)]


def band_of(channel: str, value: float | None, config: ConsoleConfig) -> dict[str, Any] | None:
    """The colour band of a channel's value, if the channel has bands."""
    if channel.endswith(FLOOD_SUFFIX):
        index = flood_band(value, config)
        return None if index is None else {"kind": "flood", "level": index}
    if channel.endswith(PM25_SUFFIX):
        name = pm25_band(value)
        return None if name is None else {"kind": "vn_aqi", "level": PM25_BANDS.index(name), "name": name}
    return None
