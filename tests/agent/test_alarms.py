"""The pole's warning light: hysteresis, driven by the node with no uplink, emulated at the pin."""

from __future__ import annotations

import threading

import pytest

from drivers.emulator import EmulatedRig
from node import config
from node.agent import Agent
from node.alarms import AlarmRule
from node.buffer import SqliteBuffer
from node.errors import ConfigError
from node.sampler import EmulatedHardware
from tests.agent.conftest import wait_for
from tests.conftest import EXAMPLE_CONFIG
from tests.test_config import run_cli


def rule(**kw):
    return AlarmRule("light", "flood.depth_cm", on_at=20.0, off_below=15.0,
                     on_readings=kw.pop("on_readings", 2), off_after_s=kw.pop("off_after_s", 600.0))


def test_on_after_two_readings_off_after_ten_calm_minutes():
    r = rule()
    assert r.observe(0, 21.0) is None  # one reading is not enough
    assert r.observe(60, 19.0) is None  # and the count restarts
    assert r.observe(120, 20.0) is None
    assert r.observe(180, 22.0) is True and r.on
    assert r.observe(240, 14.0) is None  # calm starts
    assert r.observe(300, 16.0) is None  # not calm: 16 >= 15
    for t in range(360, 960, 60):
        assert r.observe(t, 14.0) is None
    assert r.observe(960, 14.0) is False and not r.on


def test_untrusted_readings_neither_light_nor_darken():
    r = rule()
    assert r.observe(0, 25.0) is None
    assert r.observe(10, None) is None  # a spike or a dead ranger: no evidence
    assert r.observe(20, 25.0) is True
    for t in range(30, 5000, 60):
        assert r.observe(t, None) is None
    assert r.on  # a ranger dead mid-flood leaves the light on


def _cfg(tmp_path, alarm_extra=None):
    return config.validate({
        "node": {"id": "lamp-node", "state_dir": str(tmp_path / "state")},
        "sensors": [{"type": "bme280", "name": "weather", "interval": "0.2s"},
                    {"type": "flood", "name": "flood", "trigger_pin": 23, "echo_pin": 24,
                     "mount_height_cm": 300, "interval": "0.2s"}],
        "storm": {"interval": "0.2s"},
        "alarms": [{"name": "light", "pin": 22, "channel": "flood.depth_cm", "on_at": 20.0,
                    "off_below": 15.0, "off_after": "10m", **(alarm_extra or {})}],
        "emulation": {"enabled": True, "scenario": "storm", "speed": 7200.0},
    })


def test_the_light_follows_the_emulated_storm_with_no_uplink(tmp_path, caplog):
    caplog.set_level("WARNING")
    cfg = _cfg(tmp_path)
    assert not cfg.central["url"]  # no central at all: the light is the node's own business
    rig = EmulatedRig("storm", speed=7200.0, start_s=18.5 * 3600)  # water at ~17 cm, rising
    agent = Agent(cfg, hardware=EmulatedHardware(rig))
    agent.start()
    lamp = rig.lamps["light"]
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert wait_for(lambda: any(lit for _, lit in lamp.switches), what="light on", timeout=20)
        depth_at_on = rig.truth().depth_cm
        assert wait_for(lambda: lamp.switches and not lamp.switches[-1][1], what="light off", timeout=30)
        depth_at_off = rig.truth().depth_cm
    finally:
        agent.stop()
        runner.join(10)
    assert 20.0 <= depth_at_on < 30.0 and depth_at_off < 15.0
    with SqliteBuffer(tmp_path / "state" / "buffer.db", "lamp-node") as buf:
        rs = buf.claim(100_000).readings
    states = [r.value for r in rs if r.channel == "light.alarm_on"]
    assert states == [0.0, 1.0, 0.0]  # the initial state, then each change: readings like any other
    assert agent.counters["alarm_changes"] == 2
    assert any("emulated light (GPIO22) ON" in m for m in caplog.messages)


def test_alarm_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, {"channel": "flod.depth_cm", "off_below": 25.0, "pin": 23})
    text = str(e.value)
    assert "alarms[0].channel: no sensor named 'flod'" in text
    assert "alarms[0].off_below: 25 is above alarms[0].on_at (20)" in text
    assert "alarms[0].pin: GPIO 23 is already used by sensors[1].trigger_pin" in text


def test_cli_config_check_exits_78_with_one_line_naming_the_alarm_key(tmp_path, cli_env):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE_CONFIG.read_text().replace('channel = "flood.depth_cm"',
                                                      'channel = "flood.depth_mm"'))
    r = run_cli("--config", str(bad), "config", "check", env=cli_env)
    assert r.returncode == 78
    assert r.stderr.strip().splitlines() == [
        "streetnode: config: alarms[0].channel: flood sensor 'flood' has no quantity 'depth_mm' "
        "(one of depth_cm, distance_cm, rise_cm_10min)"]
