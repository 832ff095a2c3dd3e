"""The hysteresis rule shared by the pole's alarms (node/alarms.py) and the central's threshold
alerts (central/alerts/rules.py): one rule, so a light on the pole and an alert at the central
switch on and off at the same readings.

It switches *on* after ``on_readings`` consecutive readings at or above ``on_at``, and *off* once
every reading has stayed below ``off_below`` for ``off_after`` (in the unit of the times fed to
it: scenario seconds on the node, wall milliseconds at the central). Callers feed only readings
they trust. Pure and standard library only: the central imports it
(tests/central/test_spec_home.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Switch(NamedTuple):
    """Where the rule stands: on or off, the run of readings over ``on_at`` while off, and the
    time the current calm spell began while on (None: no calm spell)."""

    on: bool = False
    over: int = 0
    calm_since: float | None = None


@dataclass(frozen=True)
class Hysteresis:
    on_at: float
    on_readings: int
    off_below: float
    off_after: float

    def step(self, state: Switch, t: float, value: float) -> Switch:
        """Feed one trusted reading taken at ``t``; returns the new state (compare ``.on``)."""
        if not state.on:
            over = state.over + 1 if value >= self.on_at else 0
            return Switch(over >= self.on_readings, over, None)
        if value >= self.off_below:
            return Switch(True, state.over, None)
        calm_since = t if state.calm_since is None else state.calm_since
        if t - calm_since >= self.off_after:
            return Switch(False, 0, None)
        return Switch(True, state.over, calm_since)
