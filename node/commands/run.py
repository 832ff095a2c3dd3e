"""`streetnode run [--emulate [SCENARIO]]`: the daemon systemd runs for years."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import warnings
from typing import Any

from node import config
from node.commands.options import add_emulate_option
from node.i18n import _, set_language

log = logging.getLogger("streetnode.run")

# Character-set detection libraries requests would import (charset_normalizer: ~2 MiB RSS, two
# compiled modules and their tables) only to guess the encoding of a text body that declares none.
# The daemon reads nothing but the central's JSON answers, which requests decodes without them
# (UTF-8/16/32 detection of RFC 8259), and requests runs without a detection library by design
# (`Response.apparent_encoding` falls back to UTF-8).
NO_CHARSET_DETECTION = ("charset_normalizer", "chardet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help=_("run the node: sample, buffer, upload (the daemon)"),
                       description=_("Sample the configured sensors, store every reading durably and "
                                     "upload them. SIGTERM stops cleanly (exit 0), SIGHUP reloads the "
                                     "configuration. Its log stays in English."))
    add_emulate_option(p, help=_("run on emulated hardware playing SCENARIO (calm, storm, ...; default: "
                                 "[emulation] scenario, else calm); without a config file: the built-in "
                                 "emulated rig"))
    p.add_argument("--speed", type=float, metavar="X",
                   help=_("with --emulate: play the scenario X times faster (default [emulation] speed)"))
    p.set_defaults(func=run_cmd)


def run_cmd(args: argparse.Namespace) -> int:
    # a SIGTERM while the agent is still being built (a slow start on a loaded Pi) must stop it
    # cleanly too, not kill the process half-way: remember it until the agent exists
    early_stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: early_stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: early_stop.set())
    set_language("en")  # the daemon writes the journal: English, for developers and the operators
    from node import logsetup

    cfg = config.load_or_builtin(args.config, emulate=args.emulate is not None)
    fleet = None
    if cfg.fleet["enabled"] and cfg.central["url"] and cfg.source != config.BUILTIN_EMULATED:
        from node.fleet import Fleet  # configuration from the central over the file (docs/fleet.md)

        raw, source = config.load_raw(cfg.source)
        fleet = Fleet(raw, source, cfg.state_dir)
        cfg = fleet.startup()
    if args.emulate == "":
        args.emulate = cfg.emulation["scenario"]
    if args.speed is not None:
        cfg.emulation["speed"] = args.speed
    logsetup.setup(cfg.node["log_level"], args.verbose)
    if args.emulate is None and not cfg.emulation["enabled"] and config.gpio_pins(cfg):
        logsetup.route_gpiozero_warnings()  # one line with the cause, not 4 raw warnings per device
    without_charset_detection()
    from node.agent import Agent

    agent = Agent(cfg, scenario=args.emulate, fleet=fleet, **_emulated_clock(cfg, args.emulate))
    path = fleet.source if fleet is not None else cfg.source

    def on_term(signum: int, frame: Any) -> None:
        agent.signal_stop()  # a flag only: see Agent.signal_stop

    def on_hup(signum: int, frame: Any) -> None:
        # parse outside the handler's frame: a thread keeps the signal handler short
        threading.Thread(target=_reload, args=(agent, path, args.verbose), daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    if early_stop.is_set():
        agent.signal_stop()
    agent.start()
    where = f"emulated hardware ({agent.scenario}, x{agent.speed:g})" if agent.scenario else "hardware"
    log.info("node %s running on %s with %d sensors; buffer %s; central %s", cfg.node["id"], where,
             len(agent.sampler.slots) if agent.sampler else 0, cfg.state_dir / "buffer.db",
             "configured" if cfg.central["url"] else "not configured (buffer only)")
    return agent.run()


def without_charset_detection() -> None:
    """Keep requests' optional character-set detection out of this process (the daemon only).

    A ``None`` entry in `sys.modules` makes ``import name`` raise ModuleNotFoundError (the
    import system's documented behaviour), so requests takes its no-detection path and
    warns once with RequestsDependencyWarning, which is silenced here. A module some other
    code already imported is left alone.
    """
    for name in NO_CHARSET_DETECTION:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection",
                            module="requests")


def _emulated_clock(cfg: config.Config, emulate: str | None) -> dict[str, Any]:
    """With a scenario that has a ``[clock]``: the rig, and a `Clock` on its emulated wall clock."""
    name = emulate
    if name is None and cfg.emulation["enabled"]:
        name = cfg.emulation["scenario"]
    if name is None:
        return {}
    from drivers.emulator.scenarios import scenario

    try:
        if scenario(name).clock is None:
            return {}
    except ValueError as e:
        raise config.ConfigError(f"emulation.scenario: {e}") from None  # i18n: no (the daemon: English)
    from node.agent import build_hardware
    from node.clock import Clock

    hw = build_hardware(cfg, name)
    rig = hw.rig  # type: ignore[attr-defined]
    clock = Clock(wall=rig.wall_time, sync=rig.clock_synced, boot_id=rig.scenario.clock.boot_id)
    return {"hardware": hw, "clock": clock}


def _reload(agent: Any, path: str, verbose: int) -> None:
    agent.notifier.reloading()
    try:
        cfg = agent.fleet.reload(path) if agent.fleet is not None else config.load(path)
    except config.ConfigError as e:
        log.error("SIGHUP: configuration not reloaded, keeping the running one: %s", "; ".join(e.problems))
        agent.notifier.ready()
        return
    agent.request_reload(cfg)
    agent.notifier.ready()
