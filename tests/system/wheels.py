"""The Python wheels the container installs from (pip --no-index): no PyPI during the test.

Built on the host with the test's own pip from what pyproject.toml asks for (node, the central
extra, and the build backend the installer's `pip wheel` of the checkout needs), cached by the
hash of pyproject.toml. The container's Python (Debian 3.11) takes the same cp311 wheels.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

BUILD = ("setuptools>=77", "wheel")


def ensure_wheelhouse(cache: Path, checkout: Path) -> Path:
    key = hashlib.sha256((checkout / "pyproject.toml").read_bytes()).hexdigest()[:12]
    house = cache / f"wheels-{key}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock-wheels", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (house / ".ok").exists():
            return house
        tmp = cache / f".wheels-build-{key}"
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                            "-w", str(tmp), f"{checkout}[central]", *BUILD],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"pip wheel failed: {r.stderr[-2000:]}")
        for own in tmp.glob("streetnode-*.whl"):  # the checkout itself is built by the installer
            own.unlink()
        (tmp / ".ok").touch()
        shutil.rmtree(house, ignore_errors=True)
        tmp.rename(house)
        return house
