"""Alarms on the pole: a light or siren switched by the node itself, uplink or not.

Each ``[[alarms]]`` entry watches one channel (``flood.depth_cm``) with hysteresis: it switches
*on* after ``on_readings`` consecutive valid readings at or above ``on_at``, and *off* once every
valid reading has stayed below ``off_below`` for ``off_after`` (scenario seconds: monotonic x the
emulation speed). A reading the sampler does not trust (faulted, out of range, stuck, a spike) is
no evidence either way: it neither counts towards switching on nor breaks a calm spell, so a
ranger that dies mid-flood leaves the light on (fail-safe) and a bird never lights it.

`AlarmRule` is the pure state machine (its rule is `node.hysteresis`, the one the central's
threshold alerts use); the agent owns the outputs (`drivers.alarm.AlarmOutput`),
stores each change as a reading ``<alarm>.alarm_on`` (1 / 0) in the same cycle as the reading
that caused it, and starts an alert upload round at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.hysteresis import Hysteresis, Switch


@dataclass
class AlarmRule:
    name: str
    channel: str
    on_at: float
    off_below: float
    on_readings: int = 2
    off_after_s: float = 600.0
    since_s: float | None = None  # scenario time of the last change
    value: float | None = None  # the last valid value seen
    _switch: Switch = field(default_factory=Switch)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> AlarmRule:
        return cls(cfg["name"], cfg["channel"], float(cfg["on_at"]), float(cfg["off_below"]),
                   int(cfg["on_readings"]), float(cfg["off_after"]))

    @property
    def on(self) -> bool:
        return self._switch.on

    def observe(self, t_s: float, value: float | None) -> bool | None:
        """Feed one reading of the channel (None: untrusted); True when the alarm switches on,
        False when it switches off, else None."""
        if value is None:
            return None
        self.value = value
        rule = Hysteresis(self.on_at, self.on_readings, self.off_below, self.off_after_s)
        was_on = self.on
        self._switch = rule.step(self._switch, t_s, value)
        if self.on == was_on:
            return None
        self.since_s = t_s
        return self.on

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "channel": self.channel, "on": self.on, "value": self.value,
                "on_at": self.on_at, "off_below": self.off_below}
