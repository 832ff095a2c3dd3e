"""The system test's figures and notes, printed at the end of the run (also by `make test`)."""

from __future__ import annotations

from typing import Any

FIGURES: dict[str, str] = {}
NOTES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES and not NOTES:
        return
    terminalreporter.section("streetnode system test: Debian bookworm, systemd as PID 1 (systemd-nspawn)")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")
    for note in NOTES:
        terminalreporter.write_line(f"note: {note}")
