"""Diag output: one line per check for a terminal, a stable JSON document for machines."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from typing import IO, Any

from node.diag.core import Report, Status
from node.i18n import N_, _, number

# the status column as a technician reads it (English: the names JSON uses)
STATUS_LABELS = {Status.PASS: N_("PASS"), Status.WARN: N_("WARN"), Status.FAIL: N_("FAIL"),
                 Status.SKIP: N_("SKIP")}

JSON_VERSION = 1
_COLOURS = {Status.PASS: "32", Status.WARN: "33", Status.FAIL: "31;1", Status.SKIP: "2"}


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if "NO_COLOR" in os.environ:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def terminal_width(stream: IO[str]) -> int | None:
    """The terminal's width when ``stream`` is a terminal; None (no wrapping) when piped."""
    isatty = getattr(stream, "isatty", None)
    return shutil.get_terminal_size().columns if isatty and isatty() else None


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


def _wrap(text: str, pad: str, width: int | None, hang: str = "") -> list[str]:
    """``text`` as lines; wrapped under ``pad`` (later lines indented by ``hang``) on a terminal."""
    if not width or width - len(pad) < 30:
        return [text]
    return textwrap.wrap(text, width=width - len(pad), subsequent_indent=hang, break_on_hyphens=False,
                         break_long_words=False) or [""]


def to_text(report: Report, *, colour: bool = False, width: int | None = None) -> str:
    """One line per check (wrapped to ``width`` on a terminal), details and remedies under it."""
    id_width = max((len(r.id) for r in report.results), default=10)
    lines = []
    node = report.node
    if node.get("emulated"):
        head = _("streetnode diag: node {node} (emulated, scenario {scenario})").format(
            node=node.get("id") or "?", scenario=node["emulated"])
    else:
        head = _("streetnode diag: node {node}").format(node=node.get("id") or "?")
    lines.append(_paint(head, "1", colour))
    labels = {s: _(text) for s, text in STATUS_LABELS.items()}
    label_width = max(4, *(len(text) for text in labels.values()))
    pad = " " * (label_width + 2 + id_width + 2)
    for r in report.results:
        status = _paint(f"{labels[r.status]:<{label_width}}", _COLOURS[r.status], colour)
        first, *rest = _wrap(r.summary, pad, width)
        lines.append(f"{status}  {r.id:<{id_width}}  {first}")
        lines += [pad + more for more in rest]
        if r.status >= Status.WARN:
            for d in r.detail.splitlines():
                lines += [pad + part for part in _wrap(d, pad, width)]
            if r.remedy:
                for part in _wrap("→ " + r.remedy, pad, width, hang="  "):
                    lines.append(pad + _paint(part, "36", colour))
    c = report.counts()
    verdict = {0: _("all checks passed"), 1: _("WARNINGS"), 2: _("FAILURES")}[report.exit_code]
    colour_code = {0: "32;1", 1: "33;1", 2: "31;1"}[report.exit_code]
    lines.append(_("{passed} pass, {warned} warn, {failed} fail, {skipped} skipped in {seconds} s: "
                   "{verdict} (exit {code})").format(
        passed=c["pass"], warned=c["warn"], failed=c["fail"], skipped=c["skip"],
        seconds=number(report.duration_s, 1), verdict=_paint(verdict, colour_code, colour),
        code=report.exit_code))
    return "\n".join(lines) + "\n"


def to_dict(report: Report) -> dict[str, Any]:
    c = report.counts()
    return {
        "version": JSON_VERSION,
        "node": report.node,
        "checks": [r.as_dict() for r in report.results],
        "summary": {**c, "status": ("PASS", "WARN", "FAIL")[report.exit_code],
                    "exit_code": report.exit_code, "duration_s": round(report.duration_s, 3)},
    }


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False) + "\n"
