"""Issue #10: every batch carries the node's backlog, firmware, config hash and location
(contract 3 of the brief), so the central's node list shows them instead of '-'."""

from __future__ import annotations

from node import __version__, config
from node.buffer import SqliteBuffer
from node.identity import key_fingerprint, local_identity, read_key_record
from tests.agent.conftest import NODE, start_node, stop_node, wait_for, write_config

LOCATION = '[node.location]\nlat = 21.0285\nlon = 105.8542\nward = "Hoan Kiem"\nlabel = "pole 17"\n'


def test_health_of_every_batch_reaches_the_central(tmp_path, central, node_env):
    url, store, key = central
    cfg_path = write_config(tmp_path, url=url, key=key)
    text = cfg_path.read_text().replace('log_level = "info"\n', 'log_level = "info"\n' + LOCATION, 1)
    cfg_path.write_text(text)
    proc = start_node(cfg_path, node_env)
    try:
        node = wait_for(lambda: next((n for n in store.list_nodes() if n.node_id == NODE and n.health
                                      and n.health.get("firmware")), None), 30, "a batch with health", proc)
    finally:
        stop_node(proc)
    h = node.health
    assert h["firmware"] == f"streetnode {__version__}"
    assert h["config_hash"] == config.config_hash(config.load(cfg_path))
    assert isinstance(h["backlog_readings"], int) and h["backlog_readings"] >= 0
    assert h["oldest_reading_age_s"] is None or h["oldest_reading_age_s"] >= 0
    assert (h["location_lat"], h["location_lon"], h["location_ward"], h["location_label"]) == \
        (21.0285, 105.8542, "Hoan Kiem", "pole 17")
    for key_name in ("storm", "clock_synced", "clock_offset_ms"):
        assert key_name in h
    # #20: the machine and the buffer that sent it (this machine's own view of itself)
    here = local_identity()
    assert (h["hw_serial"], h["machine_id"]) == (here.hw_serial, here.machine_id)
    buffer_id = SqliteBuffer.inspect(tmp_path / "state" / "buffer.db").buffer_id
    assert isinstance(h["buffer_id"], str) and len(h["buffer_id"]) == 32 and h["buffer_id"] == buffer_id
    record = read_key_record(tmp_path / "state")  # the agent recorded the key's first machine
    assert record["key"] == key_fingerprint(key) and record.get("machine_id") == here.machine_id
    assert all(v is None or isinstance(v, str | int | float | bool) for v in h.values())


def test_config_hash_ignores_comments_and_follows_values(tmp_path):
    base = write_config(tmp_path)
    commented = tmp_path / "commented.toml"
    commented.write_text("# a comment\n" + base.read_text())
    changed = tmp_path / "changed.toml"
    changed.write_text(base.read_text().replace("speed = 60.0", "speed = 30.0"))
    h = config.config_hash(config.load(base))
    assert len(h) == 16 and h == config.config_hash(config.load(commented))
    assert h != config.config_hash(config.load(changed))
