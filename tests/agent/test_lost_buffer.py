"""#20 with the real daemon: the state file remembers the buffer, so a start after the database was
deleted, or rolled back to an earlier copy, records it (incident, gap, new epoch) and `status` says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from node.buffer import SqliteBuffer
from tests.agent.conftest import NODE, start_node, state, stop_node, wait_for, write_config
from tests.conftest import ROOT


def run_until(cfg, env, tmp_path, readings: int) -> dict:
    proc = start_node(cfg, env)
    wait_for(lambda: (state(tmp_path).get("buffer") or {}).get("top", 0) >= readings, 30,
             f"{readings} readings in the state file", proc)
    rc, err = stop_node(proc)
    assert rc == 0, err
    return state(tmp_path)


def pending(path):
    buf = SqliteBuffer(path, NODE)
    batch = buf.claim(1, max_records=200)
    out = (buf.epoch, batch.gaps, batch.incidents)
    buf.release(batch.id)
    buf.close()
    return out


def status(cfg, env):
    r = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "status", "--json"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_deleted_buffer_is_recorded_as_lost_with_the_range_the_state_file_knew(tmp_path, node_env):
    cfg = write_config(tmp_path)  # no central: everything stays in the buffer
    st = run_until(cfg, node_env, tmp_path, 20)["buffer"]
    assert st["epoch"] == 1 and st["acked"] == 0 and len(st["buffer_id"]) == 32
    for p in (tmp_path / "state").glob("buffer.db*"):
        if not p.name.endswith(".epoch"):
            p.unlink()
    proc = start_node(cfg, node_env)
    wait_for(lambda: (state(tmp_path).get("buffer") or {}).get("epoch") == 2, 30, "epoch 2", proc)
    assert status(cfg, node_env)["numbering"]["lost_at_start"]
    stop_node(proc)
    epoch, gaps, incidents = pending(tmp_path / "state" / "buffer.db")
    assert epoch == 2
    assert [(g.epoch, g.first_seq, g.last_seq, g.reason) for g in gaps] == [(1, 1, st["top"], "buffer_lost")]
    assert [i.kind for i in incidents].count("buffer_lost") == 1


def test_a_buffer_rolled_back_to_an_earlier_copy_starts_a_new_epoch_at_once(tmp_path, node_env):
    cfg = write_config(tmp_path)
    run_until(cfg, node_env, tmp_path, 10)
    shutil.copytree(tmp_path / "state", tmp_path / "copy")
    early = SqliteBuffer.inspect(tmp_path / "copy" / "buffer.db").last_seq
    top = run_until(cfg, node_env, tmp_path, early + 20)["buffer"]["top"]
    for p in (tmp_path / "copy").glob("buffer.db*"):
        shutil.copy2(p, tmp_path / "state" / p.name)
    proc = start_node(cfg, node_env)
    wait_for(lambda: (state(tmp_path).get("buffer") or {}).get("epoch") == 2, 30, "epoch 2", proc)
    text = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "status"], cwd=ROOT,
                          env=node_env, capture_output=True, text=True, timeout=30).stdout
    assert "buffer: it had rolled back when the daemon started" in text and "numbering: epoch 2" in text
    stop_node(proc)
    epoch, gaps, incidents = pending(tmp_path / "state" / "buffer.db")
    assert epoch == 2
    assert [(g.epoch, g.first_seq, g.last_seq, g.reason) for g in gaps] == [
        (1, early + 1, top, "buffer_rollback")]
    assert [i.kind for i in incidents] == ["buffer_rollback"]
