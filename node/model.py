"""The records that flow sampler -> buffer -> uploader -> central.

Channel names are ``"<sensor name>.<quantity>"`` where the quantity carries
its unit (``air.pm2_5_ugm3``, ``weather.pressure_hpa``); `CHANNEL_UNITS`
maps the quantity to its unit and wire resolution.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Quality(enum.IntFlag):
    """Quality flags of a reading, as they travel on the wire (never renumber: part of the protocol).

    Bits 0-7 are set by drivers, bits 8-15 by the node. ``drivers.quality.Quality`` is the drivers'
    own copy (drivers never import node/); tests/test_protocol.py checks that both agree.
    """

    OK = 0
    CLAMPED = 1 << 0          # value was outside the chip's range and clamped to it
    OUT_OF_RANGE = 1 << 1     # value outside the plausible/measurable range (e.g. no echo)
    STUCK = 1 << 2            # the same raw value for too long
    FAULT = 1 << 3            # the sensor failed; value is None
    COMPENSATED = 1 << 4      # distance/depth corrected for the speed of sound in this cycle's air
    CLOCK_UNSYNCED = 1 << 8   # wall time was not synchronized and could not be corrected
    CLOCK_CORRECTED = 1 << 9  # wall time was corrected after the fact by a measured offset
    STORM = 1 << 10           # taken while storm mode was active
    SPIKE = 1 << 11           # a single outlier against its neighbours: kept, but not taken as water


# a value with one of these flags is no evidence (the node's storm triggers and alarms, the central's
# threshold alerts ignore it)
UNTRUSTED = int(Quality.OUT_OF_RANGE | Quality.FAULT | Quality.STUCK | Quality.SPIKE)


def flag_names(flags: int) -> list[str]:
    """Lowercase names of the known bits set in ``flags`` (``[]`` for OK); unknown bits are ignored."""
    return [q.name.lower() for q in Quality if q and flags & q and q.name]

# quantity -> (unit, resolution). Values are rounded to the resolution by the
# sampler, so the buffer and the wire hold exactly the same numbers.
CHANNEL_UNITS: dict[str, tuple[str, float]] = {
    "temperature_c": ("°C", 0.01),
    "humidity_pct": ("%", 0.01),
    "pressure_hpa": ("hPa", 0.01),
    "pm1_0_ugm3": ("µg/m³", 1.0),
    "pm2_5_ugm3": ("µg/m³", 1.0),
    "pm10_ugm3": ("µg/m³", 1.0),
    "depth_cm": ("cm", 0.1),
    "distance_cm": ("cm", 0.1),
    "rise_cm_10min": ("cm/10min", 0.1),
    "alarm_on": ("", 1.0),
    "rain_mm": ("mm", 0.0001),
    "rain_rate_mm_h": ("mm/h", 0.01),
    "cpu_temp_c": ("°C", 0.1),
    "disk_used_pct": ("%", 0.1),
    "load_1m": ("", 0.01),
    "uptime_s": ("s", 1.0),
    "throttled": ("", 1.0),
}


def quantity(channel: str) -> str:
    return channel.rsplit(".", 1)[-1]


def unit_of(channel: str) -> tuple[str, float]:
    """(unit, resolution) of a channel; unknown quantities get ("", 0.001)."""
    return CHANNEL_UNITS.get(quantity(channel), ("", 0.001))


@dataclass(frozen=True, slots=True)
class Sample:
    """One value as the sampler hands it to the buffer."""

    channel: str
    value: float | None  # None when the sensor faulted (flags has Quality.FAULT)
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a sampling cycle was taken."""

    wall_ms: int  # time.time() in ms; may be wrong before the clock is synchronized
    boot_ms: int  # CLOCK_BOOTTIME in ms: never steps, restarts at 0 each boot
    boot_id: str  # /proc/sys/kernel/random/boot_id (or a stand-in)
    synced: bool  # the wall clock was synchronized when the cycle was taken
    corrected: bool = False  # not synchronized, but on the central's time (CLOCK_CORRECTED)


@dataclass(frozen=True, slots=True)
class Reading:
    """A stored reading with its identity: (node id, epoch, seq) is never reused."""

    seq: int
    channel: str
    value: float | None
    flags: int
    wall_ms: int
    boot_ms: int
    boot_id: str


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of sequence numbers that will never be delivered, and why."""

    epoch: int
    first_seq: int
    last_seq: int
    count: int
    first_wall_ms: int | None
    last_wall_ms: int | None
    reason: str  # "evicted_size", "evicted_age", "disk_full", "overflow", "rejected"


@dataclass(frozen=True, slots=True)
class Incident:
    """Something the city's operators should know about (corruption, rejection...)."""

    id: int
    wall_ms: int
    kind: str  # "buffer_corrupt", "batch_rejected", "disk_full", "sensor_fault", ...
    detail: str
    count: int | None = None


@dataclass
class Batch:
    """What the buffer hands the uploader: ack or release it by ``id``."""

    id: int
    node_id: str
    epoch: int
    readings: list[Reading]
    gaps: list[Gap] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    live: bool = False  # claimed newest-first (the live batch after an outage)
