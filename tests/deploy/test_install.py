"""deploy/install.sh staged into temp dirs: the tree, idempotency, upgrades, uninstall, early failures."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import INSTALL_SH, ROOT, base_args, run_install

UNIT_LINK = "etc/systemd/system/multi-user.target.wants/streetnode.service"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_fresh_install_lays_out_the_tree(pristine, node_key):
    root, r = pristine
    assert "install.sh: 10 changes" in r.out
    assert mode(root / "etc/streetnode") == 0o750
    assert mode(root / "etc/streetnode/config.toml") == 0o640
    assert mode(root / "etc/streetnode/node.key") == 0o600
    assert (root / "etc/streetnode/node.key").read_bytes() == node_key.read_bytes()
    assert mode(root / "var/lib/streetnode") == 0o750
    assert list((root / "var/lib/streetnode").iterdir()) == []
    assert mode(root / "etc/systemd/system/streetnode.service") == 0o644
    assert (root / "etc/systemd/system/streetnode.service").read_bytes() == \
        (ROOT / "systemd/streetnode.service").read_bytes()
    link = root / UNIT_LINK
    assert link.is_symlink() and os.readlink(link) == "/etc/systemd/system/streetnode.service"
    assert (root / "etc/modules-load.d/streetnode.conf").read_text().splitlines()[-1] == "i2c-dev"


def test_config_is_the_example_with_id_and_url(pristine):
    root, _ = pristine
    text = (root / "etc/streetnode/config.toml").read_text()
    assert 'id = "hn-test-0007"' in text
    assert 'url = "https://central.example.org"' in text
    assert "hn-hoankiem-0042" not in text


def test_staged_venv_runs_and_names_the_final_path(pristine):
    root, _ = pristine
    venv = root / "opt/streetnode/venv"
    script = (venv / "bin/streetnode").read_text().splitlines()[0]
    assert script == "#!/opt/streetnode/venv/bin/python"
    assert str(root) not in (venv / "pyvenv.cfg").read_text()
    p = subprocess.run([venv / "bin/python", "-m", "node.cli", "config", "check",
                        root / "etc/streetnode/config.toml"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    assert 'id = "hn-test-0007"' in p.stdout


def test_second_run_changes_nothing(installed, wheel, node_key):
    before = {p: p.stat().st_mtime_ns for p in installed.rglob("*") if not p.is_symlink()}
    r = run_install(*base_args(installed, wheel), "--node-id", "hn-test-0007",
                    "--central-url", "https://central.example.org", "--key-file", node_key)
    assert r.rc == 0, r.err
    assert r.changes == []
    assert r.out.splitlines()[-1] == "install.sh: 0 changes"
    after = {p: p.stat().st_mtime_ns for p in installed.rglob("*") if not p.is_symlink()}
    assert after == before


def test_upgrade_keeps_buffer_config_and_key_byte_identical(installed, upgrade_wheel):
    buf = installed / "var/lib/streetnode/buffer.db"
    buf.write_bytes(os.urandom(200_000))
    cfg = installed / "etc/streetnode/config.toml"
    cfg.write_text(cfg.read_text().replace('ward = "Hoan Kiem"', 'ward = "Ba Dinh"'))  # technician edit
    saved = {p: p.read_bytes() for p in (buf, cfg, installed / "etc/streetnode/node.key")}
    r = run_install(*base_args(installed, upgrade_wheel))
    assert r.rc == 0, r.err
    assert r.changes == ["changed: /opt/streetnode/venv: install streetnode from " + str(upgrade_wheel)]
    for p, data in saved.items():
        assert p.read_bytes() == data, p
    v = subprocess.run([installed / "opt/streetnode/venv/bin/python", "-c",
                        "import importlib.metadata as m; print(m.version('streetnode'))"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert v.stdout.strip() == "0.1.1"


def test_new_key_replaces_old_one_at_0600(installed, tmp_path, wheel):
    new = tmp_path / "rotated.key"
    new.write_bytes(b"ab" * 32 + b"\n")
    key = installed / "etc/streetnode/node.key"
    key.chmod(0o644)
    r = run_install(*base_args(installed, wheel), "--key-file", new)
    assert r.rc == 0, r.err
    assert "changed: /etc/streetnode/node.key (updated, mode 0600)" in r.out
    assert key.read_bytes() == b"ab" * 32 + b"\n"
    assert mode(key) == 0o600


def test_wrong_modes_are_repaired_and_reported(installed, wheel):
    cfg = installed / "etc/streetnode/config.toml"
    cfg.chmod(0o666)
    r = run_install(*base_args(installed, wheel))
    assert r.rc == 0, r.err
    assert r.changes == ["changed: /etc/streetnode/config.toml mode 666 -> 0640"]
    assert mode(cfg) == 0o640


def test_dry_run_prints_actions_and_changes_nothing(tmp_path, wheel, node_key):
    r = run_install(*base_args(tmp_path, wheel), "--dry-run", "--node-id", "hn-x", "--key-file", node_key)
    assert r.rc == 0, r.err
    assert list(tmp_path.iterdir()) == []
    assert "would change: /etc/streetnode/node.key (new, mode 0600)" in r.out
    assert "would change: " + "/" + UNIT_LINK + " -> /etc/systemd/system/streetnode.service" in r.out
    assert r.out.splitlines()[-1] == "install.sh: dry run: 10 changes would be made"


def test_uninstall_removes_what_it_installed_and_keeps_data(installed, wheel):
    (installed / "var/lib/streetnode/buffer.db").write_bytes(b"readings")
    r = run_install("--root", installed, "--no-system", "--uninstall")
    assert r.rc == 0, r.err
    for gone in ("opt/streetnode", "etc/systemd/system/streetnode.service", UNIT_LINK,
                 "etc/modules-load.d/streetnode.conf"):
        assert not os.path.lexists(installed / gone), gone
    assert (installed / "var/lib/streetnode/buffer.db").read_bytes() == b"readings"
    assert (installed / "etc/streetnode/config.toml").is_file()
    assert (installed / "etc/streetnode/node.key").is_file()
    again = run_install("--root", installed, "--no-system", "--uninstall")
    assert again.changes == [] and "install.sh: 0 changes" in again.out
    # reinstalling over kept data: config and buffer survive untouched
    back = run_install(*base_args(installed, wheel))
    assert back.rc == 0, back.err
    assert (installed / "var/lib/streetnode/buffer.db").read_bytes() == b"readings"


def test_purge_removes_data_too(installed):
    (installed / "var/lib/streetnode/buffer.db").write_bytes(b"readings")
    r = run_install("--root", installed, "--no-system", "--uninstall", "--purge")
    assert r.rc == 0, r.err
    for gone in ("etc/streetnode", "var/lib/streetnode", "opt/streetnode"):
        assert not (installed / gone).exists(), gone


def test_env_var_is_the_same_as_no_system(tmp_path, wheel):
    r = run_install("--root", tmp_path, "--wheel", wheel, "--no-deps", "--node-id", "hn-env",
                    env={"STREETNODE_INSTALL_TEST": "1"})
    assert r.rc == 0, r.err
    assert "skipped: apt packages (--no-system)" in r.out
    assert (tmp_path / "etc/streetnode/config.toml").is_file()


def test_help_documents_the_test_mode():
    r = run_install("--help")
    assert r.rc == 0
    assert "--no-system" in r.out and "STREETNODE_INSTALL_TEST=1" in r.out


# ---------------------------------------------------------------- failing early, with one clear line
@pytest.mark.parametrize(("args", "code", "message"), [
    (["--node-id", "bad id!"], 78, "--node-id: expected 1-64 letters"),
    (["--central-url", "ftp://x"], 78, "--central-url: expected an http:// or https:// URL"),
    (["--key-file", "/nonexistent/key"], 78, "--key-file: cannot read '/nonexistent/key'"),
    (["--purge"], 2, "--purge only goes with --uninstall"),
    (["--frobnicate"], 2, "unknown option '--frobnicate'"),
    ([], 2, "--node-id is required on the first install"),
])
def test_bad_arguments(tmp_path, wheel, args, code, message):
    r = run_install(*base_args(tmp_path, wheel), *args)
    assert r.rc == code, r.out + r.err
    assert message in r.err
    assert "Traceback" not in r.err
    assert list(tmp_path.iterdir()) == []  # nothing was done before failing


def test_python_too_old_fails_before_any_change(tmp_path, wheel):
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\necho 3.9\n')  # an interpreter that reports version 3.9
    old.chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    r = run_install(*base_args(root, wheel), "--node-id", "hn-x", env={"STREETNODE_PYTHON": str(old)})
    assert r.rc == 69
    assert "Python 3.9 is too old: streetnode needs Python 3.11 or newer" in r.err
    assert list(root.iterdir()) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs install.sh in system mode)")


@needs_root
def test_not_debian_fails_before_any_change(tmp_path, wheel):
    osr = tmp_path / "os-release"
    osr.write_text('ID=fedora\nID_LIKE="rhel centos"\n')
    root = tmp_path / "root"
    root.mkdir()
    r = run_install("--root", root, "--wheel", wheel, "--node-id", "hn-x",
                    env={"STREETNODE_OS_RELEASE": str(osr)})
    assert r.rc == 69
    assert "not a Debian-like system (ID='fedora'" in r.err
    assert list(root.iterdir()) == []


@needs_root
def test_not_root_fails_with_exit_77(tmp_path):
    r = run_install("--node-id", "hn-x", user="nobody")
    assert r.rc == 77
    assert "must be run as root" in r.err


def test_script_is_executable():
    assert os.access(INSTALL_SH, os.X_OK)


def test_key_from_stdin_as_the_provisioning_line_pipes_it(tmp_path, wheel):
    e = dict(os.environ, STREETNODE_PYTHON=sys.executable)
    p = subprocess.run(["bash", INSTALL_SH, *map(str, base_args(tmp_path, wheel)), "--node-id", "hn-pipe",
                        "--key-file", "-"], input="C0" * 32 + "\n", capture_output=True, text=True,
                       env=e, timeout=120, cwd="/")
    assert p.returncode == 0, p.stderr
    key = tmp_path / "etc/streetnode/node.key"
    assert key.read_text() == "C0" * 32 + "\n"
    assert mode(key) == 0o600


@pytest.mark.parametrize("text", ["secret\n", "ab" * 31 + "\n", "ab" * 33, "ab" * 16 + " " + "ab" * 16,
                                  "g" * 64])
def test_a_key_file_that_holds_no_key_is_refused_without_echoing_it(tmp_path, wheel, text):
    """#13 (old #11) item 4: the installer checks the key's form (64 hex digits, as node/keyfile.py)."""
    key = tmp_path / "k.key"
    key.write_text(text)
    r = run_install(*base_args(tmp_path, wheel), "--node-id", "hn-x", "--key-file", key)
    assert r.rc == 78, r.out + r.err
    assert "does not hold a node key (expected 64 hex digits" in r.err
    assert text.strip() not in r.out + r.err
