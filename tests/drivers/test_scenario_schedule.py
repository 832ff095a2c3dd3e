"""Scenario files with a sensor-fault schedule and an emulated wall clock (used by the chaos run)."""

from __future__ import annotations

import pytest

from drivers.bme280 import BME280
from drivers.emulator import EmulatedRig, scenario
from drivers.emulator.scenarios import HERE
from drivers.errors import DriverError
from tests.drivers.conftest import ManualClock

CALM = (HERE / "calm.toml").read_text()


def _write(tmp_path, extra_top: str = "", extra_tables: str = ""):
    p = tmp_path / "chaos.toml"
    p.write_text(CALM.replace("repeat = true", "repeat = true\n" + extra_top, 1) + "\n" + extra_tables)
    return p


def test_a_scenario_file_with_a_fault_window_breaks_and_heals_the_chip(tmp_path):
    p = _write(tmp_path, 'faults = [{target = "bme280", fault = "absent", from_s = 10, until_s = 20}]')
    clock = ManualClock()
    rig = EmulatedRig(str(p), clock=clock, autorun=False, timing=False)
    assert rig.scenario.faults[0].target == "bme280"
    bme = BME280(rig.bus(1), 0x76)
    bme.probe()
    assert bme.read()["temperature_c"] is not None
    clock.t += 10
    rig.play()
    with pytest.raises(DriverError):
        bme.probe()
    clock.t += 9.9
    rig.play()
    with pytest.raises(DriverError):
        bme.read()
    clock.t += 0.2  # the window ended: the chip answers again
    rig.play()
    bme.probe()
    assert bme.read()["temperature_c"] is not None
    rig.inject("bme280", "eio")  # a fault the schedule did not inject is left alone
    rig.play()
    assert "eio" in rig.bme280.faults


def test_bad_schedules_are_refused_with_the_field(tmp_path):
    p = _write(tmp_path, 'faults = [{target = "bme280", fault = "melted", from_s = 1, until_s = 2}]')
    with pytest.raises(ValueError, match="melted"):
        EmulatedRig(str(p), autorun=False)
    p = _write(tmp_path, 'faults = [{target = "bme280", fault = "absent", from_s = 5, until_s = 2}]')
    with pytest.raises(ValueError, match="until_s"):
        scenario(str(p))
    with pytest.raises(ValueError, match="cannot read"):
        scenario(str(tmp_path / "missing.toml"))
    p = _write(tmp_path, extra_tables='[clock]\nsynced = "yes"\n')
    with pytest.raises(ValueError, match="synced"):
        scenario(str(p))


def test_emulated_wall_clock_starts_behind_and_is_stepped(tmp_path):
    p = _write(tmp_path, extra_tables='[clock]\noffset_s = -31536000\nsynced = false\nboot_id = "emu-1"\n'
               'steps = [{at_s = 60, offset_s = 0, synced = true}]\n')
    clock = ManualClock()
    real = [1_800_000_000.0]
    rig = EmulatedRig(str(p), clock=clock, autorun=False, speed=10.0, wall=lambda: real[0])
    assert rig.scenario.clock.boot_id == "emu-1"
    assert rig.wall_time() == real[0] - 31536000 and rig.clock_synced() is False
    clock.t += 5.9  # 59 scenario seconds
    assert rig.clock_synced() is False
    clock.t += 0.1
    assert rig.wall_time() == real[0] and rig.clock_synced() is True
    plain = EmulatedRig("calm", autorun=False, wall=lambda: real[0])
    assert plain.wall_time() == real[0] and plain.clock_synced() is None
