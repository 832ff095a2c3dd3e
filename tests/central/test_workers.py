"""`streetnode-central serve --workers N`: real processes over one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from central import server, workers
from central.store import open_store
from node import protocol
from tests.central.helpers import body_of, make_batch, now_ms
from tests.central.test_cli import add_node, run, start_server


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(p) for p in f.read().split()}


def wait_for(cond, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def upload(base: str, key: bytes, node: str, first: int, n: int = 30) -> requests.Response:
    body = body_of(make_batch(range(first, first + n), node=node))
    headers = dict(protocol.BODY_HEADERS)
    headers.update(protocol.sign_request(key, "POST", protocol.INGEST_PATH, body, now_ms(), node_id=node))
    # a new connection per request, so the kernel spreads them over the workers
    return requests.post(base + protocol.INGEST_PATH, data=body, headers=headers, timeout=30)


def test_workers_share_one_database_restart_a_dead_worker_and_stop_cleanly(store_url, cli_env):
    keys = {f"pole-{i}": add_node(store_url, cli_env, f"pole-{i}") for i in range(4)}
    proc, base = start_server(["--db", store_url, "--workers", "3"], cli_env)
    try:
        workers = wait_for(lambda: len(children(proc.pid)) == 3 and children(proc.pid), what="3 workers")
        def one_node(node: str) -> list[requests.Response]:  # one batch at a time, as a node sends
            return [upload(base, keys[node], node, k * 30) for k in range(10)]

        with ThreadPoolExecutor(len(keys)) as pool:  # the nodes in parallel
            answers = [r for rs in pool.map(one_node, keys) for r in rs]
        assert [r.status_code for r in answers] == [200] * 40, [r.text for r in answers if not r.ok]
        assert sum(r.json()["stored"] for r in answers) == 4 * 10 * 30

        # a signed request replayed on another connection (maybe another worker) is refused:
        # replay protection lives in the database, not in a worker
        body = body_of(make_batch(range(1000, 1010), node="pole-0"))
        headers = dict(protocol.BODY_HEADERS)
        headers.update(protocol.sign_request(keys["pole-0"], "POST", protocol.INGEST_PATH, body, now_ms(),
                                             node_id="pole-0"))
        first = [requests.post(base + protocol.INGEST_PATH, data=body, headers=headers, timeout=30)
                 for _ in range(4)]
        assert [r.status_code for r in first][0] == 200
        assert all(r.status_code == 401 and r.json()["error"] == "replay" for r in first[1:]), \
            [r.text for r in first]

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(children(proc.pid)) == 3 and victim not in children(proc.pid),
                 what="the killed worker replaced")
        again = [upload(base, keys["pole-1"], "pole-1", 2000 + 30 * k) for k in range(6)]
        assert [r.status_code for r in again] == [200] * 6
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert re.search(rf"worker \d \(pid {victim}\) exited with -9 after [\d.]+ s; restarting it", err), err
    assert "Traceback" not in err

    store = open_store(store_url)
    try:
        per_node = {node: store.count_readings(node) for node in keys}
    finally:
        store.close()
    assert per_node == {"pole-0": 310, "pole-1": 300 + 180, "pole-2": 300, "pole-3": 300}


@pytest.mark.parametrize("value", ["0", "65", "x"])
def test_workers_out_of_range_is_one_line(value, tmp_path, cli_env):
    r = run(["serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--workers", value], cli_env)
    assert r.returncode in (2, 78), r.stderr
    assert "Traceback" not in r.stderr
    assert "--workers" in r.stderr.strip().splitlines()[-1]  # argparse's usage may come before it


def test_one_nodes_quota_is_one_quota_over_two_workers(store_url, cli_env, tmp_path):
    """Quotas live in the database: with a burst of 275 readings, a node's batches spread over two
    workers (a new connection each) are refused once the bucket is empty in all, not per worker."""
    key = add_node(store_url, cli_env, "pole-q")
    other = add_node(store_url, cli_env, "pole-r")
    conf = tmp_path / "central.toml"
    conf.write_text("[limits]\nquota_readings_burst = 275\nquota_readings_per_minute = 1\n")
    proc, base = start_server(["--db", store_url, "--workers", "2", "--config", str(conf)], cli_env)
    try:
        wait_for(lambda: len(children(proc.pid)) == 2, what="2 workers")
        answers = [upload(base, key, "pole-q", k * 50, n=50) for k in range(12)]
        codes = [r.status_code for r in answers]
        # the 6th batch of 50 takes the bucket below zero (275 -> -25); the 7th and later are
        # refused by whichever worker gets them (with one bucket per worker, 12 would pass)
        assert codes == [200] * 6 + [429] * 6, [r.text for r in answers]
        refused = answers[6].json()
        assert refused["error"] == "quota" and refused["quota"] == "quota_readings_per_minute"
        assert int(answers[6].headers["Retry-After"]) >= 1
        assert upload(base, other, "pole-r", 0, n=50).status_code == 200  # its own bucket
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    store = open_store(store_url)
    try:
        assert store.count_readings("pole-q") == 300
        level = store.transaction(lambda tx: tx.execute(
            "SELECT level FROM node_quotas WHERE node_id = 'pole-q' AND kind = 'readings'").fetchall())
        assert -26 < level[0][0] < -24  # one bucket, in the database
    finally:
        store.close()


def test_a_worker_process_gets_the_short_gil_switch_interval_and_its_collector_settings(monkeypatch,
                                                                                       sqlite_url):
    """Each worker sets what `serve` without --workers sets: at Python's default 5 ms, a read's
    every step waits that long for the GIL behind a thread decoding or storing a batch; and the
    collector leaves the process's long-lived objects alone (`central.server.prepare_process`)."""
    seen: list[float] = []
    collector: list[tuple[int, int]] = []

    class RecordingServer:
        def run(self, sockets) -> None:
            seen.append(sys.getswitchinterval())
            collector.append((gc.get_threshold()[0], gc.get_freeze_count()))

    class InProcessWorkers:  # runs the one worker's body here instead of in a forked child
        def __init__(self, sock, count, serve_one) -> None:
            self.sock, self.serve_one = sock, serve_one

        def run(self, on_started) -> int:
            on_started()
            return self.serve_one(self.sock)

    monkeypatch.setattr(server, "make_server", lambda app, **options: RecordingServer())
    monkeypatch.setattr(workers, "Workers", InProcessWorkers)
    before, threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(0.005)  # the interpreter's default, as a fresh process has it
    try:
        status = server.serve_workers(lambda: open_store(sqlite_url), "127.0.0.1:0", 1,
                                      announce=lambda line: None)
    finally:  # this is the test process: give it back what a worker sets for itself
        sys.setswitchinterval(before)
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert status == 0
    assert seen == [server.SWITCH_INTERVAL_S]
    assert collector[0][0] == server.GC_YOUNG_THRESHOLD and collector[0][1] > 10_000
