"""`diag` checks of the pole's warning lights (``[[alarms]]``): what each watches, its state.

With the daemon running (a fresh state file) the check shows the daemon's view: on or off, the
last value, the thresholds. Without it the check claims the output pin (initially off) to prove it
is usable; it never switches a siren on — `streetnode identify --alarm NAME` does that.
"""

from __future__ import annotations

from typing import Any

from node.diag.context import DiagContext
from node.diag.core import Result, fail, ok
from node.i18n import _
from node.units import format_duration


def describe(alarm: dict[str, Any]) -> str:
    """``flood_light (GPIO22) watches flood.depth_cm: on at >= 20 x2, off < 15 for 10m``"""
    return _("{name} (GPIO{pin}) watches {channel}: on at >= {on_at} x{readings}, off < {off_below} for "
             "{off_after}").format(name=alarm["name"], pin=alarm["pin"], channel=alarm["channel"],
                                   on_at=f"{alarm['on_at']:g}", readings=alarm["on_readings"],
                                   off_below=f"{alarm['off_below']:g}",
                                   off_after=format_duration(alarm["off_after"]))


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
        state = _("ON") if seen.get("on") else _("off")
        if seen.get("output"):
            summary = _("{alarm}; now {state} (last value {value}); output held by the running daemon")
        else:
            summary = _("{alarm}; now {state} (last value {value}); OUTPUT UNAVAILABLE")
        summary = summary.format(alarm=describe(alarm), state=state, value=seen.get("value"))
        if not seen.get("output"):
            return fail(cid, summary, _("the daemon could not claim the pin: see its log (journalctl -u "
                                        "streetnode) and check the relay's wiring"))
        return ok(cid, summary)
    output = AlarmOutput(alarm["pin"], active_high=alarm["active_high"], name=name,
                         pin_factory=hardware(ctx).pin_factory)
    try:
        output.probe()
    except Exception as e:
        return fail(cid, _("{alarm}; output unusable: {reason}").format(alarm=describe(alarm), reason=e),
                    _gpio_remedy(e.__cause__ or e))
    finally:
        output.close()
    return ok(cid, _("{alarm}; output usable (off); test it with: streetnode identify --alarm {name}").format(
        alarm=describe(alarm), name=name))
