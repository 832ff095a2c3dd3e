"""Issue #10: `make demo` on a fresh clone was silent while it made the venv, then printed pip's
noise. Now it says what it does and shows pip's output only when pip fails.

The Makefile runs for real against a stand-in interpreter, so no package is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.deploy.conftest import ROOT

FAKE_PYTHON = """#!/bin/sh
# stand-in for python3: '-m venv DIR' makes DIR/bin/python (this script); '-m pip' is noisy
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0; fi
if [ "$1 $2" = "-m pip" ]; then
    echo "Collecting gpiozero (noise on stdout)"; echo "DEPRECATION: noise on stderr" >&2
    [ -n "$FAIL_PIP" ] && { echo "ERROR: No matching distribution found for nosuch" >&2; exit 1; }
    exit 0
fi
exit 0
"""


@pytest.fixture
def fake_python(tmp_path):
    p = tmp_path / "python3"
    p.write_text(FAKE_PYTHON)
    p.chmod(0o755)
    return p


def make_venv(tmp_path, fake_python, **env):
    venv = tmp_path / "venv"
    return subprocess.run(["make", "-s", "-C", str(ROOT), f"PYTHON={fake_python}", f"VENV={venv}",
                           f"{venv}/.installed-dev"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env}), venv


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_setting_up_says_what_it_does_and_keeps_pip_quiet(tmp_path, fake_python):
    r, venv = make_venv(tmp_path, fake_python)
    assert r.returncode == 0, r.stderr
    assert "setting up" in r.stdout and "first run only" in r.stdout and f"{venv} ready" in r.stdout
    assert "noise" not in r.stdout + r.stderr
    assert (venv / ".installed-dev").exists()
    again, _ = make_venv(tmp_path, fake_python)
    assert again.stdout == "" and again.returncode == 0  # nothing to do: nothing said


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_pip_failure_shows_pips_output_and_fails(tmp_path, fake_python):
    r, venv = make_venv(tmp_path, fake_python, FAIL_PIP="1")
    assert r.returncode != 0
    assert "No matching distribution found for nosuch" in r.stdout + r.stderr
    assert not (venv / ".installed-dev").exists()
