"""Agent fixtures: a real receiver on loopback, configs for emulated nodes, the CLI as a process."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

NODE = "pole-1"


@pytest.fixture
def central(tmp_path):
    """A real streetnode-central receiver (in-process, 127.0.0.1, free port, SQLite on tmp_path)."""
    from central import server
    from central.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'central.db'}")
    key = secrets.token_bytes(32)
    store.add_node(NODE, key, int(time.time() * 1000))
    url, stop = server.serve_in_thread(store, host="127.0.0.1", port=0)
    yield url, store, key
    stop()
    store.close()


def write_config(tmp_path: Path, *, url: str | None = None, key: bytes | None = None, extra: str = "",
                 sensors: str | None = None, speed: float = 60.0, name: str = "config.toml") -> Path:
    lines = [f'[node]\nid = "{NODE}"\nstate_dir = "{tmp_path / "state"}"\nlog_level = "info"\n']
    if url:
        kf = tmp_path / "node.key"
        kf.write_text((key or b"").hex())
        kf.chmod(0o600)
        lines.append(f'[central]\nurl = "{url}"\nkey_file = "{kf}"\nread_timeout = "2s"\n'
                     '[upload]\ninterval = "1s"\nbackoff_initial = "0.2s"\nbackoff_max = "1s"\n')
    lines.append(sensors if sensors is not None else
                 '[[sensors]]\ntype = "bme280"\nname = "weather"\ninterval = "0.2s"\n'
                 '[[sensors]]\ntype = "pm25"\nname = "air"\ninterval = "0.3s"\n')
    lines.append(f'[emulation]\nenabled = true\nscenario = "calm"\nspeed = {speed}\n')
    lines.append(extra)
    p = tmp_path / name
    p.write_text("\n".join(lines))
    return p


def state(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "state" / "agent-state.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for(pred, timeout: float = 20.0, what: str = "condition", proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited {proc.returncode} while waiting for {what}: {err[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_node(cfg: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "run", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_node(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 5.0) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"did not stop within {timeout}s after signal {sig}: {err[-2000:]}") from None
    return proc.returncode, err


@pytest.fixture
def node_env(cli_env):
    env = dict(cli_env)
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(k, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


__all__ = ["NODE", "os", "start_node", "state", "stop_node", "wait_for", "write_config"]
