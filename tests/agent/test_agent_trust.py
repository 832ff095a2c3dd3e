"""#21 at the agent: sensors that lie or die, storm triggers, SIGHUP, a disk bad from boot.

The agent runs on the emulated rig (faults injected at the pin/register level); the only stand-in
is a driver given through the sampler's registry that hands back NaN, as a third-party driver's
arithmetic can.
"""

from __future__ import annotations

import logging
import math
import subprocess
import threading

import pytest

from drivers.quality import Quality
from node import config
from node.agent import Agent
from node.buffer import SqliteBuffer
from node.buffer.overflow import VOLATILE_EPOCH_BASE
from node.sampler import REGISTRY
from tests.agent.conftest import NODE, start_node, stop_node, wait_for, write_config


def _run(agent, seconds):
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    return runner


def _stop(agent, runner):
    agent.stop()
    runner.join(10)
    assert not runner.is_alive()


class NanBME280:
    """What a driver whose compensation divides 0 by 0 hands back."""

    quantities = ("temperature_c", "pressure_hpa")

    def probe(self):
        pass

    def read(self):
        return {"temperature_c": math.nan, "pressure_hpa": 1008.5}

    def close(self):
        pass


def test_a_nan_from_a_driver_never_leaves_the_sampling_loop(tmp_path):
    """Before: ValueError from round(nan) raised out of Agent.run; no cycle stored, restart loop."""
    cfg = config.validate({
        "node": {"id": "nan-node", "state_dir": str(tmp_path / "state")},
        "sensors": [{"type": "bme280", "name": "weather", "interval": "0.1s"},
                    {"type": "pm25", "name": "air", "interval": "0.1s"}],
        "emulation": {"enabled": True, "scenario": "calm", "speed": 1.0},
    })
    agent = Agent(cfg, registry={**REGISTRY, "bme280": lambda c, hw: NanBME280()})
    agent.start()
    runner = _run(agent, 0)
    try:
        assert wait_for(lambda: agent.counters["cycles"] >= 5, what="cycles", timeout=20)
    finally:
        _stop(agent, runner)
    with SqliteBuffer(tmp_path / "state" / "buffer.db", "nan-node") as buf:
        rs = buf.claim(10_000).readings
    temps = [r for r in rs if r.channel == "weather.temperature_c"]
    assert temps and all(r.value is None and r.flags & Quality.FAULT for r in temps)
    assert any(r.channel == "weather.pressure_hpa" and r.value == 1008.5 for r in rs)
    assert any(r.channel == "air.pm2_5_ugm3" and r.value is not None for r in rs)


def _storm_cfg(tmp_path, sensors, **storm):
    return config.validate({
        "node": {"id": "storm-node", "state_dir": str(tmp_path / "state")},
        "sensors": sensors,
        "storm": {"interval": "0.1s", "pressure_drop_hpa_3h": 100, "rain_rate_mm_h": 200,
                  "flood_depth_cm": 10, "clear_after": "10m", **storm},
        "emulation": {"enabled": True, "scenario": "storm", "speed": 48 * 3600 / 24.0},  # 48 h in 24 s
    })


@pytest.mark.filterwarnings("ignore:no echo received")  # gpiozero's word for the injected dead echo line
def test_storm_mode_ends_when_the_ranger_dies_mid_storm(tmp_path):
    """Before: the ranger's last depth was kept forever; storm mode held for the rest of the 48 h."""
    flood = {"type": "flood", "name": "flood", "trigger_pin": 23, "echo_pin": 24, "mount_height_cm": 300,
             "interval": "0.2s"}
    air = {"type": "bme280", "name": "weather", "interval": "0.2s"}  # the depth is temperature-corrected
    agent = Agent(_storm_cfg(tmp_path, [air, flood]))
    agent.start()
    rig = agent._hw.rig
    runner = _run(agent, 0)
    try:
        assert wait_for(lambda: agent.storm.state.active, what="storm mode", timeout=20)
        assert agent.storm.state.reasons == ["flood_depth_cm"]
        rig.inject("flood", "dead_echo")  # the echo line breaks while the street is under water
        assert wait_for(lambda: not agent.storm.state.active, what="storm mode off", timeout=8)
        assert rig.truth().depth_cm > 10  # the water is still up: only the evidence is gone
    finally:
        _stop(agent, runner)


def test_a_chattering_rain_contact_flagged_out_of_range_never_starts_storm_mode(tmp_path):
    """A threshold above any plausible rate (400 mm/h): only the flagged chatter could cross it."""
    rain = {"type": "rain", "name": "rain", "pin": 17, "interval": "0.2s"}
    cfg = _storm_cfg(tmp_path, [rain], rain_rate_mm_h=450)
    cfg.emulation["scenario"] = "calm"
    cfg.emulation["speed"] = 60.0  # the gauge's rate window (scenario time) fills within a second
    agent = Agent(cfg)
    agent.start()
    agent._hw.rig.inject("rain", "out_of_range")  # ~2000 mm/h of bounces from a broken reed
    runner = _run(agent, 0)

    def flagged_chatter():
        batch = agent.buffer.claim(100_000)
        if batch is None:
            return []
        agent.buffer.release(batch.id)
        return [r for r in batch.readings if r.channel == "rain.rain_rate_mm_h"
                and r.flags & Quality.OUT_OF_RANGE and (r.value or 0) > 450]

    try:
        assert wait_for(lambda: len(flagged_chatter()) >= 5, what="flagged chatter", timeout=30)
        assert not agent.storm.state.active and agent.counters["storms"] == 0
    finally:
        _stop(agent, runner)


def test_sighup_applies_upload_and_status_led_and_names_what_needs_a_restart(tmp_path, central, caplog):
    url, _store, key = central
    base = write_config(tmp_path, url=url, key=key, extra='[status_led]\npin = 5\n')
    cfg = config.load(base)
    agent = Agent(cfg)
    agent.start()
    runner = _run(agent, 0)
    try:
        assert wait_for(lambda: agent.uploader is not None and agent.counters["upload_rounds"] > 0,
                        what="an upload round")
        assert agent.led is not None and agent.led.pin == 5
        changed = base.read_text().replace('interval = "1s"', 'interval = "2s"\nmax_batch_readings = 77\n'
                                           'live_readings = 33').replace("pin = 5", "pin = 6") \
            .replace('read_timeout = "2s"', 'read_timeout = "3s"')
        base.write_text(changed)
        with caplog.at_level(logging.INFO, logger="streetnode.agent"):
            agent.request_reload(config.load(base))
            assert wait_for(lambda: agent.uploader.max_batch_readings == 77, what="upload settings")
            assert wait_for(lambda: agent.led is not None and agent.led.pin == 6, what="new LED")
        assert agent.uploader.live_readings == 33 and agent._upload_interval == 2.0
        assert "central.read_timeout changed; takes effect after a restart" in caplog.text
    finally:
        _stop(agent, runner)


def _mount_tmpfs(target):
    target.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(target)],
                         capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, as CI has): {res.stderr.strip()}")


def test_a_disk_read_only_from_boot_still_uploads_what_it_samples_and_its_disk_error(tmp_path, central,
                                                                                        node_env):
    """Before: no durable cycle, so the upload thread never started and nothing left the node."""
    url, store, key = central
    state = tmp_path / "state"
    _mount_tmpfs(state)
    try:
        with SqliteBuffer(state / "buffer.db", NODE):
            pass  # a buffer from an earlier boot
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True, timeout=20)
        cfg = write_config(tmp_path, url=url, key=key)
        proc = start_node(cfg, node_env)
        try:
            wait_for(lambda: store.count_readings(NODE) >= 20, what="readings at the central", proc=proc)
            wait_for(lambda: any(i.kind == "disk_error" for i in store.incidents(NODE)),
                     what="the disk_error incident at the central", proc=proc)
        finally:
            rc, err = stop_node(proc)
        assert rc == 0, err
        assert "neither the disk nor the central took" not in err  # memory was sent (at the stop too)
        epochs = {r.epoch for r in store.readings(NODE, limit=None)}
        assert len(epochs) == 1 and epochs.pop() >= VOLATILE_EPOCH_BASE  # never the file's numbers
        assert store.seqs(NODE, 1) == []
    finally:
        subprocess.run(["umount", "-l", str(state)], capture_output=True, timeout=20)
