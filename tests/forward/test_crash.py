"""Real processes: `streetnode-central serve --config` forwarding to our own Mosquitto; the central
is SIGKILLed mid-forward, the broker is stopped while uploads go on, both come back: every stored
reading arrives (a resend repeats byte-identical messages), in stored order."""

from __future__ import annotations

import json
import signal
import time

from central.store import open_store
from tests.central.test_cli import start_server
from tests.forward.broker import Recorder
from tests.sta.data import KEYS, LOCATED, now_ms, readings, upload


def first_seen(messages) -> tuple[list[str], dict[str, bytes]]:
    """Ids in order of first arrival, and each id's payload (asserting resends are identical)."""
    order, payloads = [], {}
    for topic, payload in messages:
        if topic.endswith("/attributes"):
            continue
        rid = json.loads(payload)["id"]
        if rid in payloads:
            assert payloads[rid] == payload, f"resend of {rid} differs"
            continue
        payloads[rid] = payload
        order.append(rid)
    return order, payloads


def test_central_killed_and_broker_restarted_nothing_lost(db_url, own_broker, prefix, tmp_path, cli_env):
    store = open_store(db_url)
    for node, key in KEYS.items():
        store.add_node(node, key, now_ms())
    conf = tmp_path / "central.toml"
    conf.write_text(f'[[forward]]\nname = "city"\nlayout = "plain"\nhost = "127.0.0.1"\n'
                    f'port = {own_broker.port}\ntopic_prefix = "{prefix}"\nmax_messages_per_s = 300\n'
                    'chunk_readings = 100\n')
    recorder = Recorder(own_broker.port, [prefix + "/#"], persistent=True)
    proc, url = start_server(["--db", db_url, "--config", str(conf)], cli_env)
    try:
        for part in range(4):  # 3600 readings: ~12 s of forwarding at 300 messages/s
            upload(url, "pole-1", 1, readings(300, first_cycle=part * 300, first_seq=part * 900), LOCATED)
        got = recorder.wait_for(lambda m: len(m) > 600, 60)
        assert 600 < len(got) < 3600, len(got)
        proc.send_signal(signal.SIGKILL)  # mid-forward: some of a chunk published, its cursor not advanced
        proc.wait(timeout=30)
        own_broker.stop()
        proc, url = start_server(["--db", db_url, "--config", str(conf)], cli_env)
        upload(url, "pole-1", 2, readings(200), LOCATED)  # stored while the broker is down
        time.sleep(3)
        own_broker.start()
        total = 3600 + 600
        got = recorder.wait_for(lambda m: len(first_seen(m)[0]) >= total, 120)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        recorder.close()
    order, _ = first_seen(got)
    stored = [f"pole-1:{e}:{s}" for e in (1, 2) for s in store.seqs("pole-1", e)]
    store.close()
    assert len(stored) == total
    assert sorted(order) == sorted(stored)  # every stored reading arrived
    assert order == stored  # in the order stored (epoch 1 uploads came first)
    assert "Traceback" not in proc.stderr.read()
