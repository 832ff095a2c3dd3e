"""The rules' state machines, pure: what one reading (or one batch's health) does to a rule's state.

A threshold rule (depth, rate of rise, PM2.5 band) opens after ``for_readings`` consecutive
readings at or above ``above`` and resolves once every reading has stayed below ``clear_below``
for ``clear_after`` (reading times, ms). Readings no newer than the last one evaluated for the
(rule, node) are backfill of what was already judged: they do not move the state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from central.alerts.config import Rule

# flags (drivers.quality.Quality) that make a reading no evidence: FAULT, OUT_OF_RANGE, STUCK, SPIKE
UNTRUSTED = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 11)


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
    if not st.active:
        st.over = st.over + 1 if value >= rule.above else 0
        if st.over >= rule.for_readings:
            st.active, st.calm_since_ms = True, None
            return "open"
        return None
    if value >= rule.clear_below:
        st.calm_since_ms = None
        return None
    if st.calm_since_ms is None:
        st.calm_since_ms = t_ms
    if t_ms - st.calm_since_ms >= rule.clear_after_ms:
        st.active, st.over, st.calm_since_ms = False, 0, None
        return "resolve"
    return None


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
