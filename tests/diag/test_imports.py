"""Issue #10: diag's checks run in threads, so everything they import is imported before.

The first `diag --emulate` after an install once died with "cannot import name 'PiBoardInfo'
from partially initialized module 'gpiozero.pins.pi'": two check threads imported gpiozero at
once. Each test runs in a fresh interpreter, where nothing is imported yet.
"""

from __future__ import annotations

import json
import subprocess

from tests.conftest import EXAMPLE_CONFIG, PYTHON, ROOT

WATCHED = ("gpiozero", "drivers", "node", "adafruit_", "smbus2", "colorzero", "busio", "requests")

RUN_DIAG = f"""
import argparse, json, sys
from node.commands.diag import context_from_args
from node.diag import checks
args = argparse.Namespace(config={str(EXAMPLE_CONFIG)!r}, emulate="", fault=[], root=None)
ctx = context_from_args(args, require_config=False)
checks.prepare(ctx)
before = set(sys.modules)
report = checks.run_diag(ctx)
late = sorted(m for m in set(sys.modules) - before if m.startswith({WATCHED!r}))
crashed = [r.summary for r in report.results if "crashed" in r.summary]
print(json.dumps({{"late": late, "crashed": crashed, "ids": [r.id for r in report.results]}}))
"""


def test_a_whole_diag_run_imports_nothing_after_its_threads_start(tmp_path):
    r = subprocess.run([PYTHON, "-c", RUN_DIAG], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "sensor.weather" in out["ids"] and "sensor.rain" in out["ids"]
    assert out["crashed"] == []
    assert out["late"] == [], "imported inside check threads; add them to node.diag.checks.PRELOAD"


CONCURRENT = """
import importlib, sys, threading
from node.diag.checks import PRELOAD
barrier = threading.Barrier(len(PRELOAD))
errors = []
def load(name):
    barrier.wait()
    try:
        importlib.import_module(name)
    except Exception as e:
        errors.append(f"{name}: {type(e).__name__}: {e}")
%s
threads = [threading.Thread(target=load, args=(n,)) for n in PRELOAD]
for t in threads: t.start()
for t in threads: t.join()
print("\\n".join(errors) or "ok")
"""


def test_the_checks_imports_after_preload_are_safe_from_any_number_of_threads(tmp_path):
    """Every module a check imports, imported by many threads at the same instant after `preload_imports`."""
    code = CONCURRENT % "from node.diag.checks import preload_imports; preload_imports()"
    for _ in range(3):
        r = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
