"""Fixtures for the installer tests: wheels built once per session, staged installs on tmp dirs.

install.sh runs for real (bash, python -m venv, pip) with ``--root`` and ``--no-system``: apt,
raspi-config, user creation, chown and systemctl are the only steps skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_SH = ROOT / "deploy" / "install.sh"
UNITS = ROOT / "systemd"


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def changes(self) -> list[str]:
        return [ln for ln in self.out.splitlines() if ln.startswith(("changed:", "removed:"))]


@contextlib.contextmanager
def public_dir() -> Iterator[Path]:
    """A fresh directory every user can reach (mode 0755 under /tmp), removed afterwards.

    Tests that run a script as another user ('nobody') copy it here: the checkout may live
    under a 0700 directory (a clone in root's home), and so does pytest's tmp_path."""
    d = Path(tempfile.mkdtemp(prefix="streetnode-public-", dir="/tmp"))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def public_copy(script: Path, into: Path) -> Path:
    """``script`` copied to ``into``/deploy/, readable and executable by everyone."""
    (into / "deploy").mkdir(mode=0o755, exist_ok=True)
    copy = into / "deploy" / script.name
    shutil.copy(script, copy)
    copy.chmod(0o755)
    return copy


def run_install(*args: str | Path, env: dict[str, str] | None = None, user: str | None = None) -> Run:
    """deploy/install.sh ARGS as a real subprocess (120 s deadline); as ``user``: a public copy."""
    e = dict(os.environ)
    e.pop("STREETNODE_INSTALL_TEST", None)
    e["STREETNODE_PYTHON"] = sys.executable
    e.update(env or {})
    with public_dir() as pub:
        script = public_copy(INSTALL_SH, pub) if user else INSTALL_SH
        cmd = ["bash", str(script), *map(str, args)]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=120, cwd="/")
    return Run(p.returncode, p.stdout, p.stderr)


def _build_wheel(src: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("streetnode-*.whl")
    return wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout built once into a wheel (pip's build isolation, the machine's index)."""
    return _build_wheel(ROOT, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def upgrade_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same code as version 0.1.1: what an upgrade brings."""
    src = tmp_path_factory.mktemp("src-upgrade")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("node", "drivers", "central"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    text = (src / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(text.replace('version = "0.1.0"', 'version = "0.1.1"', 1))
    return _build_wheel(src, tmp_path_factory.mktemp("wheel-upgrade"))


@pytest.fixture(scope="session")
def node_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("key") / "pole-7.key"
    p.write_bytes(os.urandom(32).hex().encode() + b"\n")
    return p


def base_args(root: Path, wheel: Path) -> list[str | Path]:
    return ["--root", root, "--no-system", "--wheel", wheel, "--no-deps"]


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory, wheel: Path, node_key: Path) -> tuple[Path, Run]:
    """One fresh staged install, made once; tests copy it rather than re-installing."""
    root = tmp_path_factory.mktemp("pristine")
    r = run_install(*base_args(root, wheel), "--node-id", "hn-test-0007",
                    "--central-url", "https://central.example.org", "--key-file", node_key)
    assert r.rc == 0, r.out + r.err
    return root, r


@pytest.fixture
def installed(pristine: tuple[Path, Run], tmp_path: Path) -> Path:
    """A private copy of the pristine install (the staged venv is relocatable by design)."""
    root = tmp_path / "root"
    shutil.copytree(pristine[0], root, symlinks=True)
    return root
