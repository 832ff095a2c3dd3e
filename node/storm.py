"""Storm mode: triggers, hysteresis, and the state the agent acts on.

Any trigger above its threshold starts storm mode: the pressure falling faster
than ``pressure_drop_hpa_3h`` (least-squares slope over the last 3 h, once at
least 20 min of history exist), the rain rate above ``rain_rate_mm_h``, or the
flood depth above ``flood_depth_cm``. It ends once every trigger has stayed
below ``clear_ratio`` x its threshold for ``clear_after`` — so a storm that
dips for a minute does not flap in and out.

A trigger is evidence only while its sensor delivers: a level not refreshed by
a valid value for ``stale_after_s`` expires (the agent also forgets the levels
of a sensor that faulted), and a value the driver flagged (out of range, stuck,
faulted: ``None`` here) never sets one. A ranger that dies mid-storm, or a
chattering rain contact reading 900 mm/h, neither holds nor starts storm mode.

Times are in seconds of *scenario time*: the agent passes its monotonic clock
multiplied by the emulation speed (1.0 on real hardware), so the 3 h window
and ``clear_after`` shrink with a time-compressed scenario.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.trend import slope_per_s

WINDOW_S = 3 * 3600.0
MIN_SPAN_S = 20 * 60.0
STALE_AFTER_S = 15 * 60.0  # default; the agent sets it from its sensors' intervals
# trigger -> the quantity it is computed from
SOURCES = {"pressure_drop_hpa_3h": "pressure_hpa", "rain_rate_mm_h": "rain_rate_mm_h",
           "flood_depth_cm": "depth_cm"}


@dataclass
class StormState:
    active: bool = False
    since_s: float | None = None  # scenario time storm mode began
    reasons: list[str] = field(default_factory=list)
    levels: dict[str, float] = field(default_factory=dict)  # trigger -> measured level

    def as_dict(self) -> dict[str, Any]:
        return {"active": self.active, "reasons": list(self.reasons),
                "levels": {k: round(v, 2) for k, v in self.levels.items()}}


class StormDetector:
    """Feed it quantities as they are sampled; it says when storm mode starts and ends."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.enabled = bool(cfg.get("enabled", True))
        self.thresholds = {
            "pressure_drop_hpa_3h": float(cfg["pressure_drop_hpa_3h"]),
            "rain_rate_mm_h": float(cfg["rain_rate_mm_h"]),
            "flood_depth_cm": float(cfg["flood_depth_cm"]),
        }
        self.clear_after = float(cfg["clear_after"])
        self.clear_ratio = float(cfg["clear_ratio"])
        self.stale_after_s = STALE_AFTER_S
        self.state = StormState()
        self._pressure: deque[tuple[float, float]] = deque()
        self._levels: dict[str, tuple[float, float]] = {}  # trigger -> (level, scenario time seen)
        self._calm_since: float | None = None

    def tracked(self) -> list[str]:
        """The quantities the triggers are computed from."""
        return list(SOURCES.values())

    def forget(self, quantities: object) -> None:
        """The sensor of these quantities faulted or was removed: its triggers are no evidence."""
        gone = set(quantities)  # type: ignore[call-overload]
        for trigger, source in SOURCES.items():
            if source in gone:
                self._levels.pop(trigger, None)
                if source == "pressure_hpa":
                    self._pressure.clear()

    def pressure_drop_3h(self) -> float | None:
        """hPa the pressure falls per 3 h (negative: rising); None without enough history."""
        slope = slope_per_s(self._pressure, min_points=3, min_span_s=MIN_SPAN_S)  # hPa per second
        return None if slope is None else -slope * WINDOW_S

    def observe(self, now_s: float, values: Mapping[str, float | None]) -> bool | None:
        """Feed quantities (``pressure_hpa``, ``rain_rate_mm_h``, ``depth_cm``) sampled at
        ``now_s`` (None: a flagged value, ignored); returns True when storm mode starts, False when
        it ends, else None. Call it every pass, with no values too: levels expire."""
        p = values.get("pressure_hpa")
        if p is not None:
            self._pressure.append((now_s, float(p)))
            while self._pressure and self._pressure[0][0] < now_s - WINDOW_S:
                self._pressure.popleft()
            drop = self.pressure_drop_3h()
            if drop is not None:
                self._levels["pressure_drop_hpa_3h"] = (drop, now_s)
        for trigger in ("rain_rate_mm_h", "flood_depth_cm"):
            value = values.get(SOURCES[trigger])
            if value is not None:
                self._levels[trigger] = (float(value), now_s)
        for trigger, (_, seen) in list(self._levels.items()):
            if now_s - seen > self.stale_after_s:
                del self._levels[trigger]
        return self._evaluate(now_s)

    def _evaluate(self, now_s: float) -> bool | None:
        if not self.enabled:
            return None
        levels = {k: v for k, (v, _) in self._levels.items()}
        over = [k for k, v in levels.items() if v > self.thresholds[k]]
        st = self.state
        st.levels = levels
        if not st.active:
            if over:
                st.active, st.since_s, st.reasons = True, now_s, over
                self._calm_since = None
                return True
            return None
        if over:
            st.reasons = sorted(set(st.reasons) | set(over))
        calm = all(v < self.clear_ratio * self.thresholds[k] for k, v in levels.items())
        if not calm:
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now_s
        if now_s - self._calm_since >= self.clear_after:
            st.active, st.since_s, st.reasons = False, None, []
            self._calm_since = None
            return False
        return None
