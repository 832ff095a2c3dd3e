"""Logging to stderr, journald-friendly.

Under systemd (``JOURNAL_STREAM`` set) lines carry a ``<N>`` syslog priority
prefix and no timestamp: journald adds its own. Elsewhere: a timestamp, the
level and the logger name. Level: ``-v`` (info), ``-vv`` (debug), else the
config's ``node.log_level``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from node.i18n import N_

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and os.environ.get("STREETNODE_DEBUG", "") not in ("", "0"):
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if os.environ.get("STREETNODE_DEBUG", "") not in ("", "0"):
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None  # one line per event
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def level_for(config_level: str | None, verbose: int) -> int:
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return min(logging.INFO, logging.getLevelName((config_level or "info").upper()))
    return logging.getLevelName((config_level or "info").upper())


def setup(config_level: str | None = "info", verbose: int = 0, stream: object = None) -> logging.Handler:
    """Install one stderr handler on the ``streetnode`` logger tree and the root."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JournalFormatter() if os.environ.get("JOURNAL_STREAM") else PlainFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_streetnode", False):
            root.removeHandler(h)
    handler._streetnode = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level_for(config_level, verbose))
    for noisy in ("urllib3", "uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


GPIO_REMEDY = N_("on a Raspberry Pi: sudo apt install python3-lgpio (the installer does); elsewhere use "
                 "--emulate")  # the log line keeps English; a terminal shows _(GPIO_REMEDY)


def choose_pin_factory() -> tuple[Any, str]:
    """gpiozero's default pin factory, chosen once, and why it fell back: ``(factory or None, causes)``.

    gpiozero warns once per library it tries (lgpio, rpigpio, pigpio, native) every time a
    device is made while no factory could be chosen: dozens of raw warnings in the journal.
    Here the choice is made once, the warnings are collected into ``causes`` ("lgpio: No
    module named 'lgpio'; ..."), and later attempts stay silent.
    """
    import warnings

    from gpiozero import Device
    from gpiozero.exc import BadPinFactory, PinFactoryFallback

    if Device.pin_factory is not None:
        return Device.pin_factory, ""
    error: Exception | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            Device.ensure_pin_factory()
        except (BadPinFactory, ImportError, OSError, RuntimeError) as e:
            error = e
    warnings.filterwarnings("ignore", category=PinFactoryFallback)
    causes = "; ".join(str(w.message).removeprefix("Falling back from ") for w in caught
                       if issubclass(w.category, PinFactoryFallback))
    if error is not None:
        return None, causes or f"{type(error).__name__}: {error}"
    return Device.pin_factory, causes


def route_gpiozero_warnings(log: logging.Logger | None = None) -> Any:
    """`choose_pin_factory`, with one log line when it fell back or found none; returns the factory."""
    log = log or logging.getLogger("streetnode.gpio")
    factory, causes = choose_pin_factory()
    if factory is None:
        log.warning("GPIO unavailable: no pin library works here (%s); %s", causes, GPIO_REMEDY)
    elif causes:
        log.warning("GPIO through %s (%s)", type(factory).__name__, causes)
    return factory
