"""`streetnode diag [--json] [--config PATH]`: offline checks with a remedy for each problem.

Also home of the options every technician command shares (`add_field_options`,
`context_from_args`): ``--emulate [SCENARIO]``, ``--fault TARGET:FAULT`` (training)
and the hidden ``--root DIR`` / ``$STREETNODE_SYSROOT`` system root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from node import config
from node.cli import debug_enabled
from node.commands.options import add_emulate_option
from node.diag.context import FAULTS_ENV, SYSROOT_ENV, DiagContext, parse_faults
from node.errors import ConfigError, StreetnodeError
from node.i18n import N_, _, english, set_timezone

# translated where a parser uses it (the language is settled before the parsers are built)
FIELD_EPILOG = N_("Technician training: `streetnode diag --emulate storm --fault weather:absent` runs "
                  "on emulated hardware with a fault injected; see docs/diag.md.")


class UsageError(StreetnodeError):
    exit_code = 2


class HardwareError(StreetnodeError):
    """A driver error at the CLI edge, keeping the driver's exit code (69 unavailable, 77 permission)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def driver_errors() -> Iterator[None]:
    """Turn `drivers.errors.DriverError` into a one-line message with the driver's exit code."""
    from drivers.errors import DriverError

    try:
        yield
    except DriverError as e:
        raise HardwareError(str(e), e.exit_code) from None


def add_field_options(p: argparse.ArgumentParser, *, spill: str | None = None) -> None:
    """--emulate [SCENARIO], --fault and the hidden --root (--config is global: node.cli)."""
    add_emulate_option(p, spill=spill)
    p.add_argument("--fault", action="append", default=[], metavar="TARGET:FAULT",
                   help=_("training: inject a fault into the emulated hardware, e.g. weather:absent, "
                          "flood:dead_echo (repeatable; also $STREETNODE_FAULTS)"))
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)  # system root for /dev /sys /proc /run


def context_from_args(args: argparse.Namespace, *, require_config: bool) -> DiagContext:
    """A DiagContext from the command line; a bad config raises only when ``require_config``."""
    path = config.resolve_path(args.config)
    cfg, err = None, None
    try:
        cfg = config.load_or_builtin(args.config, emulate=args.emulate is not None)
        path = Path(cfg.source) if cfg.source != config.BUILTIN_EMULATED else path
        set_timezone(cfg.node["timezone"])
    except ConfigError as e:
        if require_config:
            raise
        err = e
    emulate = None
    if args.emulate is not None:
        emulate = args.emulate or (cfg.emulation["scenario"] if cfg else "calm")
    elif cfg is not None and cfg.emulation["enabled"]:
        emulate = cfg.emulation["scenario"]
    try:
        faults = parse_faults([os.environ.get(FAULTS_ENV, ""), *args.fault])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if faults and emulate is None:
        raise UsageError(_("--fault needs emulated hardware: add --emulate [SCENARIO]"))
    root = args.root or os.environ.get(SYSROOT_ENV) or "/"
    ctx = DiagContext(cfg, config_error=err, config_path=str(path), sysroot=Path(root),
                      emulate=emulate, speed=cfg.emulation["speed"] if cfg else 1.0,
                      faults=faults, debug=debug_enabled())
    if faults:
        try:
            ctx.rig()  # a fault the rig does not know is a usage error, not a crashed check
        except ValueError as e:
            raise UsageError(str(e)) from None
    return ctx


def quiet_driver_warnings() -> None:
    """gpiozero warns on stderr (no echo, PWM fallback) and emulator threads may die noisily;
    the commands report sensor trouble themselves, so tracebacks only with STREETNODE_DEBUG=1."""
    import warnings

    warnings.filterwarnings("ignore", module="gpiozero")
    if not debug_enabled():
        threading.excepthook = _background_failure


def _background_failure(args: threading.ExceptHookArgs) -> None:
    import logging

    name = args.thread.name if args.thread else "?"
    logging.getLogger("streetnode.diag").debug("background thread %s failed: %s", name, args.exc_value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diag", help=_("check sensors, bus, clock, disk, power, central; say what to fix"),
        description=_("Run every check offline in under 10 s: one line per check (PASS/WARN/FAIL) with "
                      "a remedy. Exit 0 when all pass, 1 with warnings, 2 with failures."),
        epilog=_(FIELD_EPILOG))
    p.add_argument("--json", action="store_true",
                   help=_("print a JSON document instead of text (always in English)"))
    add_field_options(p)
    p.set_defaults(func=diag_cmd)


def diag_cmd(args: argparse.Namespace) -> int:
    from node.diag import run_diag
    from node.diag.render import terminal_width, to_json, to_text, use_colour

    if args.json:  # a JSON document never changes with the language
        with english():
            ctx = context_from_args(args, require_config=False)
            quiet_driver_warnings()
            report = run_diag(ctx)
            sys.stdout.write(to_json(report))
    else:
        ctx = context_from_args(args, require_config=False)
        quiet_driver_warnings()
        report = run_diag(ctx)
        sys.stdout.write(to_text(report, colour=use_colour(sys.stdout), width=terminal_width(sys.stdout)))
    sys.stdout.flush()
    return report.exit_code
