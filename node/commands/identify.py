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


class LedBusy(StreetnodeError):
    exit_code = 69


class NoGpio(StreetnodeError):
    exit_code = 69


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("identify", help="blink the status LED to find this pole",
                       description="Blink the status LED in the fast 'identify' pattern for N seconds, "
                       "then switch it off.", epilog=FIELD_EPILOG)
    p.add_argument("--seconds", type=float, default=30.0, metavar="N", help="how long to blink (default 30)")
    p.add_argument("--alarm", metavar="NAME", help="test this [[alarms]] output instead: on for N seconds")
    add_field_options(p)
    p.set_defaults(func=identify_cmd)


def identify_cmd(args: argparse.Namespace) -> int:
    from drivers.led import StatusLED
    from node.diag.hardware import hardware

    ctx = context_from_args(args, require_config=True)
    assert ctx.cfg is not None
    if not 0 < args.seconds <= 3600:
        raise UsageError("--seconds: expected a number from 0 to 3600")
    if args.alarm is not None:
        return test_alarm(ctx, args.alarm, args.seconds)
    pin = ctx.cfg.status_led["pin"]
    if pin is None:
        raise UsageError("status_led.pin is not set in the configuration: this node has no status LED")
    if not ctx.emulate:
        from node.logsetup import GPIO_REMEDY, choose_pin_factory

        factory, causes = choose_pin_factory()
        if factory is None:
            raise NoGpio(f"cannot drive the status LED on GPIO{pin}: no GPIO here ({causes}); {GPIO_REMEDY}")
    led = StatusLED(pin, active_high=ctx.cfg.status_led["active_high"], pin_factory=hardware(ctx).pin_factory)
    try:
        led.show("identify")
    except Exception as e:  # gpiozero: pin in use by the daemon, no GPIO chip access, ...
        from node.diag.hardware import _pin_busy

        if _pin_busy(e):
            raise LedBusy(f"cannot drive the status LED on GPIO{pin}: the pin is in use; if the "
                          "streetnode service runs it holds the LED: sudo systemctl stop streetnode, "
                          "identify, then start it again") from None
        raise NoGpio(f"cannot drive the status LED on GPIO{pin}: {type(e).__name__}: {e}") from None
    print(f"node {ctx.node_id}: blinking the status LED on GPIO{pin} for {args.seconds:g} s "
          "(Ctrl-C stops)", file=sys.stderr)
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
        known = ", ".join(a["name"] for a in ctx.cfg.alarms) or "none configured"
        raise UsageError(f"--alarm: no [[alarms]] entry named {name!r} (alarms: {known})")
    pin = alarm["pin"]
    if not ctx.emulate:
        from node.logsetup import GPIO_REMEDY, choose_pin_factory

        factory, causes = choose_pin_factory()
        if factory is None:
            raise NoGpio(f"cannot drive alarm {name} on GPIO{pin}: no GPIO here ({causes}); {GPIO_REMEDY}")
    output = AlarmOutput(pin, active_high=alarm["active_high"], name=name,
                         pin_factory=hardware(ctx).pin_factory)
    try:
        output.set(True)
    except Exception as e:
        if _pin_busy(e):
            raise LedBusy(f"cannot drive alarm {name} on GPIO{pin}: the pin is in use; if the "
                          "streetnode service runs it holds the output: sudo systemctl stop streetnode, "
                          "identify, then start it again") from None
        raise NoGpio(f"cannot drive alarm {name} on GPIO{pin}: {type(e).__name__}: {e}") from None
    print(f"node {ctx.node_id}: alarm {describe(alarm)}: ON for {seconds:g} s (Ctrl-C stops)",
          file=sys.stderr)
    end = clock() + seconds
    try:
        while (left := end - clock()) > 0:
            sleep(min(0.2, left))
    finally:
        output.set(False)
        output.close()
    print(f"node {ctx.node_id}: alarm {name} off", file=sys.stderr)
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
