"""Text rendering: wrapping on a terminal, verbatim lines when piped."""

from __future__ import annotations

from node.diag.core import Report, fail, ok
from node.diag.render import to_text

LONG = "a very long remedy " * 12


def report():
    return Report([ok("disk", "fine"), fail("power", "under-voltage NOW " * 4, LONG, detail="flags 0x50005")],
                  0.5, {"id": "n1", "emulated": None})


def test_wrapped_to_the_terminal_width_under_the_summary_column():
    text = to_text(report(), width=60)
    lines = text.splitlines()
    assert all(len(line) <= 60 for line in lines[:-1])
    remedy = [line for line in lines if "remedy" in line]
    assert len(remedy) > 2 and remedy[0].lstrip().startswith("→ ")
    assert {line.index(line.lstrip()[0]) for line in remedy[1:]} == {len("FAIL  power  ") + 2}


def test_piped_output_keeps_one_line_per_field():
    lines = to_text(report()).splitlines()
    assert lines[1] == "PASS  disk   fine"
    assert lines[2].startswith("FAIL  power  under-voltage NOW") and lines[3].strip() == "flags 0x50005"
    assert lines[4].strip() == "→ " + LONG.strip()
    assert lines[-1].endswith("FAILURES (exit 2)")
