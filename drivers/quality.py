"""Quality flags carried by every reading, from the driver to the central store.

One integer bit set end to end. Bits 0-7 are set by drivers; bits 8-15 by
the node (clock state). The values are part of the wire protocol: never renumber.
"""

from __future__ import annotations

import enum


class Quality(enum.IntFlag):
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


def names(flags: int) -> list[str]:
    """Lowercase names of the bits set in ``flags`` (``[]`` for OK)."""
    return [q.name.lower() for q in Quality if q and flags & q and q.name]
