"""`streetnode run` as a real process: SIGTERM, SIGKILL, restart, SIGHUP, sd_notify."""

from __future__ import annotations

import signal
import socket
import threading
import time

from tests.agent.conftest import NODE, start_node, state, stop_node, wait_for, write_config


def _drain(tmp_path, url, key):
    """Upload what the stopped node left behind, with the real uploader."""
    from node.buffer import SqliteBuffer
    from node.uploader import Uploader

    buf = SqliteBuffer(tmp_path / "state" / "buffer.db", NODE)
    buf.open()
    up = Uploader(buf, url, key, NODE)
    deadline = time.monotonic() + 20
    while buf.stats().readings and time.monotonic() < deadline:
        if up.ready():
            up.run_round(time.monotonic() + 5)
        else:
            time.sleep(0.05)
    st = buf.stats()
    up.close()
    buf.close()
    return st


def test_sigterm_sigkill_restart_every_reading_stored_exactly_once(tmp_path, central, node_env):
    url, store, key = central
    cfg = write_config(tmp_path, url=url, key=key)
    # run 1: sample and upload, then SIGTERM: clean stop, exit 0
    p = start_node(cfg, node_env)
    wait_for(lambda: store.count_readings(NODE) >= 20, what="first uploads", proc=p)
    rc, err = stop_node(p, signal.SIGTERM, timeout=5)
    assert rc == 0, err
    assert "Traceback" not in err
    first = state(tmp_path)["counters"]["readings"]
    # run 2: killed without warning mid-run (claims in flight are lost with the process)
    p = start_node(cfg, node_env)
    wait_for(lambda: state(tmp_path).get("pid") == p.pid and state(tmp_path)["counters"]["readings"] > 15,
             what="second run sampling", proc=p)
    p.kill()
    p.wait(10)
    # run 3: picks up where the buffer left off
    p = start_node(cfg, node_env)
    wait_for(lambda: state(tmp_path).get("pid") == p.pid and state(tmp_path)["counters"]["uploaded"] > 0,
             what="third run uploading", proc=p)
    rc, err = stop_node(p, signal.SIGTERM, timeout=5)
    assert rc == 0, err
    left = _drain(tmp_path, url, key)
    assert left.readings == 0
    n = left.last_seq
    assert n > first + 30
    seqs = store.seqs(NODE, left.epoch)
    assert len(seqs) == n, "every reading stored once"
    assert sorted(seqs) == list(range(1, n + 1))


def test_sighup_reload_valid_and_invalid_config_and_sd_notify(tmp_path, node_env):
    sock_path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(0.2)
    env = {**node_env, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    cfg = write_config(tmp_path)  # no central: buffer only
    p = start_node(cfg, {**env})
    got: list[str] = []
    done = threading.Event()

    def reader():  # like systemd: always reading
        while not done.is_set():
            try:
                got.append(rx.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                pass

    threading.Thread(target=reader, daemon=True).start()

    def messages():
        return list(got)

    # WATCHDOG_PID is not set, so the node must accept WATCHDOG_USEC for itself
    wait_for(lambda: "READY=1" in messages() and "WATCHDOG=1" in messages(), what="READY and WATCHDOG",
             proc=p)
    assert any(m.startswith("STATUS=") and "backlog" in m for m in got)
    wait_for(lambda: [s["name"] for s in state(tmp_path).get("sensors", [])] == ["weather", "air"],
             what="state file", proc=p)
    # an invalid config: keeps running on the old one and says why
    cfg.write_text(cfg.read_text().replace('interval = "0.3s"', 'interval = "soon"'))
    p.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert p.poll() is None
    # a valid one with a sensor less: applied
    air = '[[sensors]]\ntype = "pm25"\nname = "air"\ninterval = "soon"\n'
    cfg.write_text(cfg.read_text().replace(air, ""))
    p.send_signal(signal.SIGHUP)
    wait_for(lambda: [s["name"] for s in state(tmp_path).get("sensors", [])] == ["weather"],
             what="reloaded sensors", proc=p)
    rc, err = stop_node(p)
    assert rc == 0
    assert "configuration not reloaded" in err and "sensors[1].interval" in err
    assert "configuration reloaded" in err
    assert "Traceback" not in err
    wait_for(lambda: "STOPPING=1" in messages(), timeout=2, what="STOPPING=1")
    assert "RELOADING=1" in got
    done.set()
