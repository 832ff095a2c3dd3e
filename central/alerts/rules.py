"""The rules' state machines, pure: what one reading (or one batch's health) does to a rule's state.

A threshold rule (depth, rate of rise, PM2.5 band) opens after ``for_readings`` consecutive
readings at or above ``above`` and resolves once every reading has stayed below ``clear_below``
for ``clear_after`` (reading times, ms). Readings no newer than the last one evaluated for the
(rule, node) are backfill of what was already judged: they do not move the state. The threshold
rule is `node.hysteresis`, the very rule of the pole's own alarms.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from central.alerts.config import Rule
from node.hysteresis import Hysteresis, Switch


@dataclass
class RuleState:
    active: bool = False
    over: int = 0
    calm_since_ms: int | None = None
    last_ms: int = -1

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str | None) -> RuleState:
        if not text:
            return cls()
        return cls(**json.loads(text))


def threshold_step(rule: Rule, st: RuleState, t_ms: int, value: float) -> str | None:
    """Feed one reading newer than ``st.last_ms``; returns "open", "resolve" or None."""
    st.last_ms = t_ms
    hysteresis = Hysteresis(rule.above, rule.for_readings, rule.clear_below, rule.clear_after_ms)
    was_active = st.active
    switch = hysteresis.step(Switch(st.active, st.over, st.calm_since_ms), t_ms, value)
    st.active = switch.on
    st.over = switch.over
    # times fed in are whole ms, so the calm spell's start is one of them
    st.calm_since_ms = None if switch.calm_since is None else int(switch.calm_since)
    if st.active == was_active:
        return None
    return "open" if st.active else "resolve"


def flag_step(st: RuleState, t_ms: int, on: bool) -> str | None:
    """A yes/no condition (the node's storm mode): open when it turns on, resolve when off."""
    if t_ms <= st.last_ms:
        return None
    st.last_ms = t_ms
    if on and not st.active:
        st.active = True
        return "open"
    if not on and st.active:
        st.active = False
        return "resolve"
    return None
