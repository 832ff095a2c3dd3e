"""`streetnode scan [--bus N]`: an i2cdetect-style grid naming known parts and configured sensors."""

from __future__ import annotations

import argparse
import sys

from node.commands.diag import (
    FIELD_EPILOG,
    add_field_options,
    context_from_args,
    driver_errors,
    quiet_driver_warnings,
)
from node.i18n import _


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help=_("scan an I2C bus and name what answers"),
                       description=_("Probe 0x03-0x77 like `i2cdetect -r` (reads only) and name known "
                                     "parts and the configured sensors."), epilog=_(FIELD_EPILOG))
    p.add_argument("--bus", type=int, default=None, metavar="N",
                   help=_("I2C bus number (default: the buses in the configuration, else 1)"))
    add_field_options(p)
    p.set_defaults(func=scan_cmd)


def scan_cmd(args: argparse.Namespace) -> int:
    from drivers.scan import format_grid
    from node.diag.checks import i2c_buses
    from node.diag.hardware import I2C_TYPES, scan_bus

    quiet_driver_warnings()
    ctx = context_from_args(args, require_config=False)
    buses = [args.bus] if args.bus is not None else (i2c_buses(ctx) or [1])
    configured = {}
    if ctx.cfg is not None:
        configured = {(s["bus"], s["address"]): s for s in ctx.cfg.sensors
                      if s["type"] in I2C_TYPES and s["enabled"]}
    missing = 0
    for n in buses:
        with driver_errors():
            found = scan_bus(ctx, n)
        if ctx.emulate:
            print(_("emulated bus {bus} ({scenario}):").format(bus=n, scenario=ctx.emulate))
        else:
            print(f"/dev/i2c-{n}:")
        print(format_grid(found))
        addresses = {f.address for f in found}
        for (bus, addr), s in sorted(configured.items()):
            if bus != n:
                continue
            missing += addr not in addresses
            if addr in addresses:
                line = _("config: {name} ({type}) at 0x{address:02x}: answers")
            else:
                line = _("config: {name} ({type}) at 0x{address:02x}: MISSING")
            print(line.format(name=s["name"], type=s["type"], address=addr))
        print()
    sys.stdout.flush()
    return 1 if missing else 0
