"""`diag` checks of the pole's warning lights (``[[alarms]]``): what each watches, its state.

With the daemon running (a fresh state file) the check shows the daemon's view: on or off, the
last value, the thresholds. Without it the check claims the output pin (initially off) to prove it
is usable; it never switches a siren on — `streetnode identify --alarm NAME` does that.
"""

from __future__ import annotations

from typing import Any

from node.diag.context import DiagContext
from node.diag.core import Result, fail, ok
from node.units import format_duration


def describe(alarm: dict[str, Any]) -> str:
    """``flood_light (GPIO22) watches flood.depth_cm: on at >= 20 x2, off < 15 for 10m``"""
    return (f"{alarm['name']} (GPIO{alarm['pin']}) watches {alarm['channel']}: on at >= "
            f"{alarm['on_at']:g} x{alarm['on_readings']}, off < {alarm['off_below']:g} for "
            f"{format_duration(alarm['off_after'])}")


def _daemon_alarms(ctx: DiagContext) -> dict[str, dict[str, Any]] | None:
    from node.agent import read_state
    from node.diag.system import STATE_FRESH_S

    state = read_state(ctx.state_dir)
    if not state or ctx.wall() - float(state.get("updated_at") or 0) > STATE_FRESH_S:
        return None
    return {a["name"]: a for a in state.get("alarms", []) if isinstance(a, dict) and "name" in a}


def check_alarm(ctx: DiagContext, name: str) -> Result:
    from drivers.alarm import AlarmOutput
    from node.diag.hardware import _gpio_remedy, hardware

    assert ctx.cfg is not None
    alarm = next(a for a in ctx.cfg.alarms if a["name"] == name)
    cid = f"alarm.{name}"
    seen = (_daemon_alarms(ctx) or {}).get(name)
    if seen is not None:
        state = "ON" if seen.get("on") else "off"
        held = "output held by the running daemon" if seen.get("output") else "OUTPUT UNAVAILABLE"
        summary = f"{describe(alarm)}; now {state} (last value {seen.get('value')}); {held}"
        if not seen.get("output"):
            return fail(cid, summary, "the daemon could not claim the pin: see its log (journalctl -u "
                        "streetnode) and check the relay's wiring")
        return ok(cid, summary)
    output = AlarmOutput(alarm["pin"], active_high=alarm["active_high"], name=name,
                         pin_factory=hardware(ctx).pin_factory)
    try:
        output.probe()
    except Exception as e:
        return fail(cid, f"{describe(alarm)}; output unusable: {e}", _gpio_remedy(e.__cause__ or e))
    finally:
        output.close()
    return ok(cid, f"{describe(alarm)}; output usable (off); test it with: streetnode identify "
              f"--alarm {name}")
