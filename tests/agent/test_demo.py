"""`streetnode demo` end to end (short), and its progress output on a TTY vs a pipe."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from node.demo import Progress, Summary, render
from tests.conftest import ROOT


def test_demo_short_run_every_reading_at_the_central_exactly_once(node_env):
    r = subprocess.run([sys.executable, "-m", "node", "demo", "--duration", "16"], cwd=ROOT, env=node_env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    sampled = int(re.search(r"readings sampled\s+(\d+)", out).group(1))
    stored = int(re.search(r"stored at the central\s+(\d+)", out).group(1))
    assert sampled > 50 and sampled == stored
    assert re.search(r"duplicates stored\s+0\b", out)
    assert "central DOWN" in out and "central UP again" in out
    assert "STORM mode ON" in out
    assert "OK: every sampled reading is at the central exactly once" in out
    assert "\r" not in out  # piped: plain lines, no redrawn progress bar
    assert "Traceback" not in r.stderr


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_tty_plain_lines_when_piped():
    tty = Tty()
    p = Progress(tty, duration=10)
    p.update(5.0, "sampled 10")
    p.event(6.0, "central DOWN")
    p.update(7.0, "sampled 12")
    text = tty.getvalue()
    assert "\r[############............]    5s sampled 10" in text
    assert "[  6.0s] central DOWN\n" in text
    pipe = io.StringIO()
    q = Progress(pipe, duration=10)
    for t in (0.0, 1.0, 2.0, 6.0):
        q.update(t, f"at {t}")
    assert pipe.getvalue() == "[  0.0s] at 0.0\n[  6.0s] at 6.0\n"


def test_summary_fails_on_a_missing_or_duplicated_reading():
    ok = Summary(sampled=10, stored=10)
    assert ok.exactly_once and "OK" in render(ok)
    assert not Summary(sampled=10, stored=9, missing=[(4, 4)]).exactly_once
    assert not Summary(sampled=10, stored=11, duplicates_stored=1).exactly_once
    assert not Summary(sampled=0, stored=0).exactly_once
    assert "FAILED" in render(Summary(sampled=10, stored=9, missing=[(4, 4)]))
