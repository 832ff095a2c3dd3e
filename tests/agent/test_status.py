"""`streetnode status` with the daemon stopped (and never started)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.agent.conftest import start_node, state, stop_node, wait_for, write_config
from tests.conftest import ROOT


def status(cfg, env, *args):
    return subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "status", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def test_status_before_the_daemon_ever_ran(tmp_path, node_env):
    cfg = write_config(tmp_path)
    r = status(cfg, node_env, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["daemon"]["running"] is False
    assert info["backlog"]["readings"] == 0
    r = status(cfg, node_env)
    assert r.returncode == 0 and "daemon stopped" in r.stdout and "no central configured" in r.stdout


def test_status_after_the_daemon_stopped(tmp_path, node_env):
    cfg = write_config(tmp_path)
    p = start_node(cfg, node_env)
    wait_for(lambda: state(tmp_path).get("counters", {}).get("readings", 0) >= 10, what="readings", proc=p)
    rc, _ = stop_node(p)
    assert rc == 0
    sampled = state(tmp_path)["counters"]["readings"]
    r = status(cfg, node_env, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["daemon"]["running"] is False
    assert info["backlog"]["readings"] == sampled  # no central: everything is still buffered
    assert info["backlog"]["oldest_age_s"] is not None
    assert {s["name"]: s["state"] for s in info["sensors"]} == {"weather": "ok", "air": "ok"}
    assert info["storm"]["active"] is False
    text = status(cfg, node_env).stdout
    assert f"backlog: {sampled} readings" in text and "sensor weather (bme280): ok" in text


def test_status_bad_config_is_one_line_exit_78(tmp_path, node_env):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[node]\nid = "x"\nstate_dir = 5\n')
    r = status(cfg, node_env)
    assert r.returncode == 78
    assert "node.state_dir" in r.stderr and "Traceback" not in r.stderr


def test_run_refuses_to_start_without_a_usable_key(tmp_path, node_env):
    cfg = write_config(tmp_path, url="http://127.0.0.1:9", key=b"\x01" * 32)
    (tmp_path / "node.key").chmod(0o644)
    r = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "run"], cwd=ROOT, env=node_env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 77
    assert "central.key_file" in r.stderr and "chmod 600" in r.stderr and "Traceback" not in r.stderr
