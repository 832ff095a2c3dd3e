"""What the node makes of a ranger's depths: the spike filter and the rate of rise.

*Spike filter* (causal: nothing waits for the next reading): a depth that jumps more than
``spike_cm`` from the last accepted depth while no rain is falling is flagged ``SPIKE`` — kept in
the data, but not taken as water (storm mode, the rate of rise and the alarms skip it). If the
next reading confirms it (within ``spike_cm`` of the flagged one) the water really moved: that
reading is clean and becomes the reference. A single outlier (a bird, a leaf, a car's roof) stays
flagged. While rain is falling (a rain rate above 0 in the last `RAIN_MEMORY_S`) a fast rise is
plausible and nothing is flagged: the flood that matters is never held back a reading.

*Rate of rise* (``rise_cm_10min``): the least-squares slope of the accepted depths of the last
10 minutes, in cm per 10 min, once they span `MIN_RISE_SPAN_S`; its own channel.

Times are scenario seconds (monotonic seconds x the emulation speed, as for storm mode).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from node.trend import slope_per_s

RISE_WINDOW_S = 600.0
MIN_RISE_SPAN_S = 120.0
RAIN_MEMORY_S = 900.0


@dataclass
class DepthVerdict:
    spike: bool
    rise_cm_10min: float | None


class DepthFilter:
    """One per ranger: feed it each valid depth; it says whether it is a spike, and the rise."""

    def __init__(self, spike_cm: float) -> None:
        self.spike_cm = spike_cm
        self._reference: float | None = None
        self._pending: float | None = None
        self._history: deque[tuple[float, float]] = deque()
        self._rain_seen_s: float | None = None

    def rain(self, t_s: float, rate_mm_h: float | None) -> None:
        """A rain rate measured at ``t_s`` (None: no valid value)."""
        if rate_mm_h is not None and rate_mm_h > 0:
            self._rain_seen_s = t_s

    def raining(self, t_s: float) -> bool:
        return self._rain_seen_s is not None and t_s - self._rain_seen_s <= RAIN_MEMORY_S

    def observe(self, t_s: float, depth_cm: float) -> DepthVerdict:
        spike = self._is_spike(t_s, depth_cm)
        if not spike:
            self._history.append((t_s, depth_cm))
        while self._history and self._history[0][0] < t_s - RISE_WINDOW_S:
            self._history.popleft()
        return DepthVerdict(spike, self.rise_cm_10min())

    def _is_spike(self, t_s: float, depth_cm: float) -> bool:
        pending, self._pending = self._pending, None
        confirmed = pending is not None and abs(depth_cm - pending) <= self.spike_cm
        if self._reference is None or confirmed or self.raining(t_s):
            self._reference = depth_cm
            return False
        if abs(depth_cm - self._reference) > self.spike_cm:
            self._pending = depth_cm
            return True
        self._reference = depth_cm
        return False

    def rise_cm_10min(self) -> float | None:
        """Slope of the accepted depths of the window, cm per 10 min (None: too little history)."""
        slope = slope_per_s(self._history, min_span_s=MIN_RISE_SPAN_S)  # cm per second
        return None if slope is None else slope * RISE_WINDOW_S
