"""The Pi's own health on emulated hardware: a laptop has no SoC thermal zone or firmware word.

`EmulatedHealth` reads load, uptime and disk use of the machine it runs on (they exist
everywhere) and emulates what only a Pi has: the CPU temperature (the scenario's air
temperature plus the heat of a Pi in an enclosure) and the firmware's get_throttled word
(0: no under-voltage, no throttling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.health import NodeHealth

ENCLOSURE_HEAT_C = 18.0  # a Pi 4 at light load in a sealed pole box, above the air outside


class EmulatedHealth(NodeHealth):
    def __init__(self, truth: Callable[[], Any], *, name: str = "health", **kw: Any) -> None:
        super().__init__(name=name, vcgencmd=None, **kw)
        self._truth = truth

    def cpu_temp_c(self) -> float | None:
        air_c = float(getattr(self._truth(), "temperature_c", 25.0))
        return round(air_c + ENCLOSURE_HEAT_C, 1)

    def throttled(self) -> int | None:
        return 0
