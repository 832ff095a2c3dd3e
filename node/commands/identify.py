"""`streetnode identify [--seconds N] [--alarm NAME]`: blink the status LED so the technician finds
the right pole, or switch a warning light / siren (``[[alarms]]``) on for N seconds to test it."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from node.commands.diag import FIELD_EPILOG, UsageError, add_field_options, context_from_args
from node.errors import StreetnodeError
from node.i18n import _, number


class LedBusy(StreetnodeError):
    exit_code = 69


class NoGpio(StreetnodeError):
    exit_code = 69


def _seconds(seconds: float) -> str:
    """``30`` or ``2,5`` (``2.5`` in English): a duration the way the reader writes numbers."""
    return number(seconds, 0) if seconds == int(seconds) else number(seconds, 1)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help=_("blink the status LED to find this pole"),
                       description=_("Blink the status LED in the fast 'identify' pattern for N seconds, "
                                     "then switch it off."), epilog=_(FIELD_EPILOG))
    p.add_argument("--seconds", type=float, default=30.0, metavar="N",
                   help=_("how long to blink (default 30)"))
    p.add_argument("--alarm", metavar="NAME",
                   help=_("test this [[alarms]] output instead: on for N seconds"))
    add_field_options(p)
    p.set_defaults(func=identify_cmd)


def identify_cmd(args: argparse.Namespace) -> int:
    from drivers.led import StatusLED
    from node.diag.hardware import hardware

    ctx = context_from_args(args, require_config=True)
    assert ctx.cfg is not None
    if not 0 < args.seconds <= 3600:
        raise UsageError(_("--seconds: expected a number from 0 to 3600"))
    if args.alarm is not None:
        return test_alarm(ctx, args.alarm, args.seconds)
    pin = ctx.cfg.status_led["pin"]
    if pin is None:
        raise UsageError(_("status_led.pin is not set in the configuration: this node has no status LED"))
    if not ctx.emulate:
        from node.logsetup import GPIO_REMEDY, choose_pin_factory

        factory, causes = choose_pin_factory()
        if factory is None:
            raise NoGpio(_("cannot drive the status LED on GPIO{pin}: no GPIO here ({causes}); {remedy}")
                         .format(pin=pin, causes=causes, remedy=_(GPIO_REMEDY)))
    led = StatusLED(pin, active_high=ctx.cfg.status_led["active_high"], pin_factory=hardware(ctx).pin_factory)
    try:
        led.show("identify")
    except Exception as e:  # gpiozero: pin in use by the daemon, no GPIO chip access, ...
        from node.diag.hardware import _pin_busy

        if _pin_busy(e):
            raise LedBusy(_("cannot drive the status LED on GPIO{pin}: the pin is in use; if the "
                            "streetnode service runs it holds the LED: sudo systemctl stop streetnode, "
                            "identify, then start it again").format(pin=pin)) from None
        raise NoGpio(_("cannot drive the status LED on GPIO{pin}: {kind}: {message}").format(
            pin=pin, kind=type(e).__name__, message=e)) from None
    print(_("node {node}: blinking the status LED on GPIO{pin} for {seconds} s (Ctrl-C stops)").format(
        node=ctx.node_id, pin=pin, seconds=_seconds(args.seconds)), file=sys.stderr)
    blink(led, args.seconds)
    return 0


def test_alarm(ctx: Any, name: str, seconds: float, *, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> int:
    """Switch the alarm output ``name`` on for ``seconds``, then off."""
    from drivers.alarm import AlarmOutput
    from node.diag.alarms import describe
    from node.diag.hardware import _pin_busy, hardware

    alarm = next((a for a in ctx.cfg.alarms if a["name"] == name), None)
    if alarm is None:
        known = ", ".join(a["name"] for a in ctx.cfg.alarms) or _("none configured")
        raise UsageError(_("--alarm: no [[alarms]] entry named {name!r} (alarms: {known})").format(
            name=name, known=known))
    pin = alarm["pin"]
    if not ctx.emulate:
        from node.logsetup import GPIO_REMEDY, choose_pin_factory

        factory, causes = choose_pin_factory()
        if factory is None:
            raise NoGpio(_("cannot drive alarm {name} on GPIO{pin}: no GPIO here ({causes}); {remedy}")
                         .format(name=name, pin=pin, causes=causes, remedy=_(GPIO_REMEDY)))
    output = AlarmOutput(pin, active_high=alarm["active_high"], name=name,
                         pin_factory=hardware(ctx).pin_factory)
    try:
        output.set(True)
    except Exception as e:
        if _pin_busy(e):
            raise LedBusy(_("cannot drive alarm {name} on GPIO{pin}: the pin is in use; if the "
                            "streetnode service runs it holds the output: sudo systemctl stop streetnode, "
                            "identify, then start it again").format(name=name, pin=pin)) from None
        raise NoGpio(_("cannot drive alarm {name} on GPIO{pin}: {kind}: {message}").format(
            name=name, pin=pin, kind=type(e).__name__, message=e)) from None
    print(_("node {node}: alarm {alarm}: ON for {seconds} s (Ctrl-C stops)").format(
        node=ctx.node_id, alarm=describe(alarm), seconds=_seconds(seconds)),
          file=sys.stderr)
    end = clock() + seconds
    try:
        while (left := end - clock()) > 0:
            sleep(min(0.2, left))
    finally:
        output.set(False)
        output.close()
    print(_("node {node}: alarm {name} off").format(node=ctx.node_id, name=name), file=sys.stderr)
    return 0


def blink(led: Any, seconds: float, *, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> None:
    """Show the 'identify' pattern for ``seconds`` (deadline from ``clock``), then switch off."""
    end = clock() + seconds
    try:
        led.show("identify")
        while (left := end - clock()) > 0:
            sleep(min(0.2, left))
    finally:
        led.show("off")
        led.close()
