"""Issue #10: `make test` failed in a clone under a 0700 directory (e.g. root's home): the tests
that run a script as user 'nobody' could not reach it. They are run here from such a clone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.deploy.conftest import ROOT

AS_NOBODY = ["tests/deploy/test_ci_deps.py::test_not_root_says_what_to_install",
             "tests/deploy/test_install.py::test_not_root_fails_with_exit_77"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run scripts as 'nobody'")
def test_the_tests_that_run_as_nobody_pass_from_a_clone_under_a_0700_directory(tmp_path):
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    clone = private / "streetnode"
    clone.mkdir()
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "deploy", "tests", "pyproject.toml"],
                           capture_output=True, check=True).stdout
    subprocess.run(["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", str(tmp_path / "src.tar")],
                   input=files, check=True)
    subprocess.run(["tar", "-C", str(clone), "-xf", str(tmp_path / "src.tar")], check=True)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *AS_NOBODY],
                       cwd=clone, capture_output=True, text=True, timeout=300,
                       env=child_env(clone))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "2 passed" in r.stdout, r.stdout[-2000:]


def child_env(clone) -> dict[str, str]:
    """The inner pytest's environment: ours, minus the outer run's own pytest options (a
    ``--basetemp`` given to the outer run would be a parent of the clone and refused)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = f"{clone}:{ROOT}"
    return env
