"""Logging: journald-friendly under systemd, timestamps otherwise, no tracebacks for expected faults."""

from __future__ import annotations

import io
import logging
import re

from node import logsetup


def _emit(monkeypatch, journal: bool, debug: bool = False) -> str:
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    if debug:
        monkeypatch.setenv("STREETNODE_DEBUG", "1")
    else:
        monkeypatch.delenv("STREETNODE_DEBUG", raising=False)
    buf = io.StringIO()
    h = logsetup.setup("info", 0, stream=buf)
    log = logging.getLogger("streetnode.test")
    try:
        log.warning("sensor %s faulted", "weather")
        try:
            raise OSError(121, "Remote I/O error")
        except OSError:
            log.error("read failed", exc_info=True)
        log.debug("not shown at info")
    finally:
        logging.getLogger().removeHandler(h)
    return buf.getvalue()


def test_journald_lines_have_priorities_and_no_timestamps(monkeypatch):
    out = _emit(monkeypatch, journal=True)
    assert out.splitlines() == ["<4>streetnode.test: sensor weather faulted",
                                "<3>streetnode.test: read failed"]


def test_plain_lines_have_timestamps_and_no_traceback_unless_debug(monkeypatch):
    out = _emit(monkeypatch, journal=False)
    assert re.match(r"\d\d:\d\d:\d\d WARNING streetnode.test: sensor weather faulted\n", out)
    assert "Traceback" not in out and "not shown" not in out
    assert "Traceback" in _emit(monkeypatch, journal=False, debug=True)


def test_levels_from_config_and_verbosity():
    assert logsetup.level_for("warning", 0) == logging.WARNING
    assert logsetup.level_for("warning", 1) == logging.INFO
    assert logsetup.level_for("error", 2) == logging.DEBUG
    assert logsetup.level_for("debug", 1) == logging.DEBUG
