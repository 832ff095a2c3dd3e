"""A real `streetnode run` process takes its configuration from a real central: applied in-process
after a signed fetch, kept when healthy, reverted by itself when no upload works (docs/fleet.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from central.fleet import push
from node import config
from tests.agent.conftest import NODE, start_node, state, stop_node, wait_for, write_config
from tests.conftest import ROOT

FLEET = '[fleet]\nhealth_window = "4s"\n'


def _health(store) -> dict:
    node = next((n for n in store.list_nodes() if n.node_id == NODE), None)
    return (node.health or {}) if node else {}


def _push(store, text):
    return push.push(store, "node", NODE, text, author="test", note="test",
                     now_ms=int(time.time() * 1000)).layer


def test_pushed_interval_is_applied_kept_and_a_dead_url_reverted(tmp_path, central, node_env):
    url, store, key = central
    cfg_path = write_config(tmp_path, url=url, key=key, extra=FLEET)
    proc = start_node(cfg_path, node_env)
    try:
        wait_for(lambda: _health(store).get("config_origin") == "local", 30, "a first batch", proc)
        good = _push(store, '[upload]\ninterval = "2s"\n[storm]\nrain_rate_mm_h = 12.5\n')
        applied = wait_for(lambda: (h := _health(store)).get("config_version") == f"n{good.id}"
                           and h.get("config_state") == "ok" and h, 30, "the new version healthy", proc)
        assert applied["config_origin"] == "central" and applied["config_failed_version"] is None
        effective = config.validate({**config.load_raw(cfg_path)[0], "upload": {
            **config.load_raw(cfg_path)[0]["upload"], "interval": "2s"}, "storm": {"rain_rate_mm_h": 12.5}})
        assert applied["config_hash"] == config.config_hash(effective)
        saved = json.loads((tmp_path / "state" / "fleet-config.json").read_text())
        assert saved["current"]["version"] == saved["last_good"]["version"] == f"n{good.id}"

        bad = _push(store, '[central]\nurl = "http://127.0.0.1:9"\n')
        reverted = wait_for(lambda: (h := _health(store)).get("config_failed_version") == f"n{bad.id}" and h,
                            40, "the dead URL reverted and reported", proc)
        assert reverted["config_version"] == f"n{good.id}" and reverted["config_state"] == "ok"
        assert "no upload completed with the new settings within 4s" in reverted["config_failed_reason"]
        assert "127.0.0.1:9" in reverted["config_failed_reason"]
        incidents = [i for i in store.incidents(NODE) if i.kind == "config_rollback"]
        assert incidents and f"configuration n{bad.id} reverted to n{good.id}" in incidents[0].detail
        st = wait_for(lambda: (s := state(tmp_path)).get("fleet", {}).get("config_failed_version") and s,
                      10, "the state file", proc)
        assert st["fleet"]["config_version"] == f"n{good.id}"
        status = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg_path), "status"],
                                cwd=ROOT, env=node_env, capture_output=True, text=True, timeout=60)
        assert f"config: version n{good.id} from the central, hash " in status.stdout
        assert f"config failed: n{bad.id}: no upload completed" in status.stdout
    finally:
        code, err = stop_node(proc)
    assert code == 0, err[-2000:]
    seqs = store.seqs(NODE, 1)
    assert seqs == sorted(set(seqs)) and len(seqs) > 10
