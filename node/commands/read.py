"""`streetnode read [SENSOR] [--watch]`: live readings with units and quality flags."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from node.commands.diag import (
    FIELD_EPILOG,
    UsageError,
    add_field_options,
    context_from_args,
    quiet_driver_warnings,
)
from node.i18n import _, clock_time, number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("read", help=_("read sensors live (units, quality flags)"),
                       description=_("Probe and read each enabled sensor (or only SENSOR) and print every "
                                     "quantity with its unit and quality flags."), epilog=_(FIELD_EPILOG))
    p.add_argument("sensor", nargs="?", help=_("a sensor name from the configuration (default: all)"))
    p.add_argument("--watch", action="store_true", help=_("keep reading until Ctrl-C"))
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help=_("seconds between rounds with --watch (default 2)"))
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help=_("stop after N rounds (with --watch)"))
    add_field_options(p, spill="sensor")
    p.set_defaults(func=read_cmd)


def format_measurement(name: str, m: Mapping[str, float | None], flags: Mapping[str, int]) -> list[str]:
    from drivers.quality import names
    from node.diag.words import quantity
    from node.model import CHANNEL_UNITS

    lines = []
    for q, v in m.items():
        unit, res = CHANNEL_UNITS.get(q, ("", 0.001))
        digits = max(0, len(f"{res:g}".partition(".")[2]))
        value = "—" if v is None else number(v, digits)
        quality = ",".join(names(int(flags.get(q, 0)))) or _("ok")
        lines.append(f"{name:<10} {quantity(q):<16} {value:>10} {unit:<6} {quality}")
    return lines


class Open:
    """One sensor built through the agent's registry; probed lazily, re-probed after a failure."""

    def __init__(self, cfg: Mapping[str, Any], hw: Any) -> None:
        self.cfg, self.hw = cfg, hw
        self.driver: Any = None

    def read_lines(self) -> tuple[list[str], bool]:
        from node.sampler import REGISTRY

        name = self.cfg["name"]
        try:
            if self.driver is None:
                self.driver = REGISTRY[self.cfg["type"]](self.cfg, self.hw)
                self.driver.probe()
            m = self.driver.read()
        except Exception as e:  # one bad sensor never stops the others (gpiozero raises its own kinds)
            self.close()
            remedy = getattr(e, "remedy", None)
            from node.diag.words import driver_message

            text = driver_message(e)
            if remedy is not None and remedy not in str(e):
                text += f" ({_(remedy)})"
            return [_("{name:<10} FAULT: {problem}").format(name=name, problem=text)], False
        flags = getattr(m, "flags", {})
        return format_measurement(name, m, flags), not any(flags.values())

    def close(self) -> None:
        if self.driver is not None:
            try:
                self.driver.close()
            except Exception:
                pass
            self.driver = None


def read_cmd(args: argparse.Namespace) -> int:
    from node.diag.hardware import hardware

    quiet_driver_warnings()
    ctx = context_from_args(args, require_config=True)
    assert ctx.cfg is not None
    sensors = [s for s in ctx.cfg.sensors if s["enabled"]]
    if args.sensor:
        names = [s["name"] for s in ctx.cfg.sensors]
        if args.sensor not in names and getattr(args, "_emulate_spilled", False):
            from node.commands.options import scenario_names

            raise UsageError(_("--emulate {word}: neither a scenario ({scenarios}) nor a sensor of "
                               "{source} ({sensors})").format(
                word=args.sensor, scenarios=", ".join(scenario_names()), source=ctx.cfg.source,
                sensors=", ".join(names) or _("none")))
        if args.sensor not in names:
            raise UsageError(_("sensor {name!r} is not in {source}; configured: {sensors}").format(
                name=args.sensor, source=ctx.cfg.source, sensors=", ".join(names) or _("none")))
        sensors = [ctx.cfg.sensor(args.sensor)]
    if args.interval <= 0:
        raise UsageError(_("--interval: expected a positive number of seconds"))
    hw = hardware(ctx)
    opened = [Open(s, hw) for s in sensors]
    rounds, all_ok = 0, True
    try:
        while True:
            stamp = clock_time()
            if ctx.emulate:
                print(_("-- {time} (emulated: {scenario})").format(time=stamp, scenario=ctx.emulate))
            else:
                print(f"-- {stamp} ")
            for o in opened:
                lines, good = o.read_lines()
                all_ok &= good
                print("\n".join(lines))
            sys.stdout.flush()
            rounds += 1
            if not args.watch or (args.count is not None and rounds >= args.count):
                break
            time.sleep(args.interval)
    finally:
        if ctx.emulate:
            hw.close()  # stop the rig's tip pump before the gauge closes (they race)
        for o in opened:
            o.close()
    return 0 if all_ok else 1
