"""deploy/ci-deps.sh, the `make test` prerequisite: silent when systemd-analyze is there, a clear
skip line when it cannot install it. (Installing for real is exercised by deploy/test-chroot.sh.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.deploy.conftest import ROOT, public_copy, public_dir

SCRIPT = ROOT / "deploy" / "ci-deps.sh"


def run(path: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """ci-deps.sh with only ``path``; as ``user``: a copy everyone can reach (the checkout may not be)."""
    with public_dir() as pub:
        cmd = ["/bin/sh", str(public_copy(SCRIPT, pub) if user else SCRIPT)]
        if user:
            cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": path}, cwd="/")


@pytest.fixture
def bare_path():
    """A PATH holding only the given tools (no systemd-analyze, no apt-get), reachable by every user."""
    with public_dir() as pub:
        def make(*tools: str) -> str:
            d = pub / "bin"
            d.mkdir(mode=0o755)
            for t in tools:
                (d / t).symlink_to(shutil.which(t))
            return str(d)

        yield make


def test_silent_when_everything_is_present():
    if not all(shutil.which(t) for t in ("systemd-analyze", "systemd-nspawn", "debootstrap")):
        pytest.skip("systemd-analyze, systemd-nspawn or debootstrap not installed here")
    r = run(os.environ["PATH"])
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check the root-only branches")
def test_root_without_apt_says_the_checks_will_be_skipped(bare_path):
    r = run(bare_path("id"))
    assert r.returncode == 0
    assert r.stdout.strip() == ("ci-deps: missing systemd systemd-container debootstrap and no apt-get: "
                                "the unit checks in tests/deploy and the systemd system test in "
                                "tests/system will be skipped")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_not_root_says_what_to_install(bare_path):
    r = run(bare_path("id", "cat"), user="nobody")
    assert r.returncode == 0 and r.stderr == ""  # 'id' ran: the script saw it was not root
    assert ("not root: the unit checks in tests/deploy and the systemd system test in tests/system will "
            "be skipped (sudo apt-get install systemd systemd-container debootstrap)") in r.stdout
