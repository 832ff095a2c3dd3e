"""deploy/ci-deps.sh, the `make test` prerequisite: silent when systemd-analyze is there, a clear
skip line when it cannot install it. (Installing for real is exercised by deploy/test-chroot.sh.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

SCRIPT = ROOT / "deploy" / "ci-deps.sh"


def run(path: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["/bin/sh", str(SCRIPT)]
    if user:
        cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": path}, cwd="/")


def bare_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only these tools (no systemd-analyze, no apt-get)."""
    d = tmp_path / "bin"
    d.mkdir()
    for t in tools:
        (d / t).symlink_to(shutil.which(t))
    return str(d)


def test_silent_when_systemd_analyze_is_present():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed here")
    r = run(os.environ["PATH"])
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check the root-only branches")
def test_root_without_apt_says_the_checks_will_be_skipped(tmp_path):
    r = run(bare_path(tmp_path, "id"))
    assert r.returncode == 0
    assert r.stdout.strip() == ("ci-deps: systemd-analyze missing and no apt-get: "
                                "the unit checks in tests/deploy will be skipped")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_not_root_says_what_to_install(tmp_path):
    path = bare_path(tmp_path, "id")
    tmp_path.chmod(0o755)
    r = run(path, user="nobody")
    assert r.returncode == 0
    assert ("not root: the unit checks in tests/deploy will be skipped "
            "(sudo apt-get install systemd)") in r.stdout
