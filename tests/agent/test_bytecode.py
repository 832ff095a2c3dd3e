"""The unit's ExecStartPre (`python -m node.bytecode`): the daemon runs -OO from a cache it never
has to write (issue #22, docs/agent.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.agent.conftest import NODE, start_node, stop_node, wait_for, write_config
from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "streetnode.service"


def _optimized_env(node_env: dict, prefix: Path) -> dict:
    env = dict(node_env, PYTHONOPTIMIZE="2", PYTHONPYCACHEPREFIX=str(prefix))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a pole: the unit does not set it
    return env


def _bytecode(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.bytecode"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _cached(prefix: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in prefix.rglob("*.pyc")}


def test_the_unit_runs_the_daemon_optimized_from_its_cache_directory():
    text = UNIT.read_text()
    assert "Environment=PYTHONOPTIMIZE=2" in text.splitlines()
    assert "Environment=PYTHONPYCACHEPREFIX=/var/cache/streetnode/pycache" in text.splitlines()
    assert "CacheDirectory=streetnode" in text.splitlines()
    assert "ExecStartPre=-/opt/streetnode/venv/bin/python -m node.bytecode" in text.splitlines()


def test_a_daemon_started_after_it_compiles_nothing(tmp_path, node_env):
    prefix = tmp_path / "pycache"
    env = _optimized_env(node_env, prefix)
    r = _bytecode(env)
    assert r.returncode == 0, r.stderr
    before = _cached(prefix)
    assert any(p.name.startswith("agent.") and p.name.endswith(".opt-2.pyc") for p in before)
    manifest = (prefix / "streetnode-bytecode.txt").read_text().splitlines()
    assert str(ROOT / "node" / "agent.py") in manifest
    cfg = write_config(tmp_path)
    p = start_node(cfg, env)
    try:
        wait_for(lambda: (tmp_path / "state" / "agent-state.json").exists(), what="state file", proc=p)
        time.sleep(1.0)  # a few cycles: sensors, buffer, status writes
    finally:
        rc, err = stop_node(p, signal.SIGTERM)
    assert rc == 0, err
    after = _cached(prefix)
    assert sorted(set(after) - set(before)) == []  # nothing the list missed
    assert all(after[p] == before[p] for p in before)  # nothing rewritten


def test_a_second_start_checks_and_a_changed_source_compiles_again(tmp_path, node_env):
    from node import bytecode

    prefix = tmp_path / "pycache"
    env = _optimized_env(node_env, prefix)
    assert _bytecode(env).returncode == 0
    manifest = prefix / "streetnode-bytecode.txt"
    written = manifest.stat().st_mtime_ns
    assert _bytecode(env).returncode == 0
    assert manifest.stat().st_mtime_ns == written  # all current: no import pass, nothing written
    # a source newer than its byte code (an upgrade): the next start compiles again
    src = tmp_path / "mod_under_test.py"
    src.write_text("X = 1\n")
    manifest.write_text(manifest.read_text() + f"{src}\n")
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
                        "import mod_under_test"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    os.utime(src, (time.time() + 10, time.time() + 10))
    check = subprocess.run([sys.executable, "-c", f"from node import bytecode; "
                            f"print(bytecode.is_current({str(src)!r}))"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "False", check.stderr
    assert _bytecode(env).returncode == 0
    assert manifest.stat().st_mtime_ns != written
    assert bytecode.is_current(str(tmp_path / "missing.py")) is False


def test_the_daemon_answers_the_same_optimized(tmp_path, node_env, central):
    """-OO drops docstrings and asserts only: the daemon samples and uploads as before."""
    url, store_, key = central
    prefix = tmp_path / "pycache"
    env = _optimized_env(node_env, prefix)
    assert _bytecode(env).returncode == 0
    p = start_node(write_config(tmp_path, url=url, key=key), env)
    try:
        wait_for(lambda: store_.count_readings(NODE) >= 10, what="uploads", proc=p)
    finally:
        rc, err = stop_node(p, signal.SIGTERM)
    assert rc == 0, err
    assert "Traceback" not in err
