from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from drivers.emulator import EmulatedPMSA003I, FakeSMBus, scenario
from drivers.emulator.pmsa003i_chip import build_frame
from drivers.errors import BusError, BusMissing, BusPermissionError, SensorNotFound, WrongChip
from drivers.i2c import BusDeviceAdapter, open_bus, read_msg
from drivers.pm25 import PM25
from drivers.quality import Quality
from drivers.scan import KNOWN_PARTS, Found, format_grid, scan
from tests.conftest import ROOT


def test_pm25_reads_the_truth_across_the_storm():
    storm = scenario("storm")
    state = {"t": 0.0}
    chip = EmulatedPMSA003I(lambda: storm.at(state["t"]), update_s=0.0)
    sensor = PM25(FakeSMBus({0x12: chip}))
    seen = []
    for t in range(0, int(storm.duration_s) + 1, 3600):
        state["t"] = t
        m = sensor.read()
        truth = storm.at(t)
        assert m["pm2_5_ugm3"] == pytest.approx(truth.pm2_5_ugm3, abs=0.5)
        assert m["pm1_0_ugm3"] == pytest.approx(truth.pm1_0_ugm3, abs=0.5)
        assert m["pm10_ugm3"] == pytest.approx(truth.pm10_ugm3, abs=0.5)
        assert m.ok
        seen.append(m["pm2_5_ugm3"])
    assert seen[0] == 60 and min(seen) == 15  # washed out by the rain


def test_pm25_reports_atmospheric_not_cf1_values(pm_chip, bus):
    pm_chip.static_truth = {"pm1_0_ugm3": 80.0, "pm2_5_ugm3": 120.0, "pm10_ugm3": 150.0}
    m = PM25(bus).read()
    assert (m["pm1_0_ugm3"], m["pm2_5_ugm3"], m["pm10_ugm3"]) == (80.0, 120.0, 150.0)


@pytest.mark.parametrize("fault, error, code", [
    ("absent", SensorNotFound, None),
    ("nack", BusError, errno.EREMOTEIO),
    ("eio", BusError, errno.EIO),
    ("wrong_id", WrongChip, None),
])
def test_pm25_faults_raise_named_errors(pm_chip, bus, fault, error, code):
    pm_chip.inject(fault)
    with pytest.raises(error) as e:
        PM25(bus, name="air").probe()
    assert e.value.sensor == "air" and e.value.address == 0x12
    if code is not None:
        assert e.value.errno == code


def test_pm25_corrupted_frame_is_a_bus_error(bus):
    class Corrupting(EmulatedPMSA003I):
        def current_frame(self) -> bytes:
            frame = bytearray(super().current_frame())
            frame[10] ^= 0xFF
            return bytes(frame)

    with pytest.raises(BusError, match="checksum"):
        PM25(FakeSMBus({0x12: Corrupting()})).read()


def test_pm25_out_of_range_is_flagged():
    chip = EmulatedPMSA003I(update_s=0.0)
    sensor = PM25(FakeSMBus({0x12: chip}))
    assert sensor.read().ok
    chip.inject("out_of_range")
    m = sensor.read()
    assert m["pm2_5_ugm3"] == 1800.0 and m.flags["pm2_5_ugm3"] == Quality.OUT_OF_RANGE


def test_pm25_stuck_frame_is_flagged_after_time_and_reads(clock):
    chip = EmulatedPMSA003I(update_s=0.0)
    sensor = PM25(FakeSMBus({0x12: chip}), clock=clock, stuck_after_s=10.0)
    assert sensor.read().ok
    chip.inject("stuck")
    flags = []
    for _ in range(6):
        clock.advance(5.0)
        flags.append(sensor.read().flags["pm2_5_ugm3"])
    assert flags[0] == 0 and flags[-1] & Quality.STUCK
    chip.clear("stuck")
    clock.advance(5.0)
    assert sensor.read().ok


def test_frame_layout_matches_plantower():
    frame = build_frame(10, 20, 30, (1, 2, 3, 4, 5, 6))
    assert frame[:4] == b"BM\x00\x1c" and len(frame) == 32
    assert int.from_bytes(frame[30:32], "big") == sum(frame[:30])


def test_scan_names_parts_and_reads_the_bme_chip_id(bus, chip):
    found = scan(bus)
    assert found == [Found(0x12, ("PMSA003I",)), Found(0x76, ("BME280",))]
    chip.inject("wrong_id")
    assert scan(bus)[1].part_names == ("BMP280",)
    chip.inject("absent")
    assert [f.address for f in scan(bus)] == [0x12]


def test_scan_marks_eio_and_grid_looks_like_i2cdetect(bus, pm_chip):
    pm_chip.inject("eio")
    found = scan(bus)
    assert found[0] == Found(0x12, ("PMSA003I",), "error")
    grid = format_grid(found).splitlines()
    assert grid[0].split() == [f"{c:x}" for c in range(16)]
    assert grid[2] == "10: -- -- EE -- -- -- -- -- -- -- -- -- -- -- -- --"
    assert grid[8].startswith("70: -- -- -- -- -- -- 76 --")
    assert "0x76  BME280" in grid
    assert KNOWN_PARTS[0x62] == ("SCD4x",) and KNOWN_PARTS[0x23] == ("BH1750",)
    assert "no device answered" in format_grid([])


def test_adapter_drives_adafruit_bus_device(bus):
    from drivers.i2c import load_adafruit

    i2c_device = load_adafruit("adafruit_bus_device.i2c_device")
    dev = i2c_device.I2CDevice(BusDeviceAdapter(bus), 0x76)  # probes with an empty write
    out = bytearray(1)
    with dev:
        dev.write_then_readinto(bytes([0xD0]), out)
    assert out[0] == 0x60
    with pytest.raises(ValueError, match="No I2C device"):
        i2c_device.I2CDevice(BusDeviceAdapter(bus), 0x40)


def test_fake_bus_unknown_address_is_nack_like_the_kernel():
    with pytest.raises(OSError) as e:
        FakeSMBus().i2c_rdwr(read_msg(0x40, 1))
    assert e.value.errno == errno.EREMOTEIO


def test_open_bus_missing_and_not_an_adapter(tmp_path):
    with pytest.raises(BusMissing, match="does not exist") as e:
        open_bus(7, dev_dir=str(tmp_path))
    assert "raspi-config" in str(e.value) and isinstance(e.value, FileNotFoundError)
    (tmp_path / "i2c-8").write_text("")
    with pytest.raises(BusMissing, match="not an I2C adapter"):
        open_bus(8, dev_dir=str(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_open_bus_permission(tmp_path):
    node = tmp_path / "i2c-9"
    node.write_text("")
    node.chmod(0)
    with pytest.raises(BusPermissionError, match="usermod -aG i2c"):
        open_bus(9, dev_dir=str(tmp_path))


def test_importing_drivers_is_light():
    code = ("import sys, drivers, drivers.errors, drivers.base, drivers.bme280, drivers.pm25, "
            "drivers.flood, drivers.rain, drivers.led, drivers.health, drivers.scan, drivers.emulator\n"
            "heavy = [m for m in ('gpiozero', 'smbus2', 'busio', 'digitalio', 'adafruit_bme280', "
            "'adafruit_platformdetect') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip() == "[]"


def test_adafruit_drivers_load_without_blinka_board_detection():
    code = ("import sys\nfrom drivers.bme280 import BME280\nfrom drivers.emulator import EmulatedRig\n"
            "rig = EmulatedRig(timing=False)\nprint(BME280(rig.bus(1)).read().ok,"
            " 'adafruit_platformdetect' in sys.modules, 'board' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.split() == ["True", "False", "False"]


def test_locked_bus_serves_drivers_and_shares_its_lock_with_adapters(bus):
    from drivers.bme280 import BME280
    from drivers.i2c import LockedBus

    locked = LockedBus(bus, 1)  # what open_bus(1) wraps around smbus2.SMBus
    assert BME280(locked).read()["temperature_c"] == pytest.approx(25.0, abs=0.01)
    assert PM25(locked).read()["pm2_5_ugm3"] == 15.0
    assert BusDeviceAdapter(locked)._lock is locked.lock
    assert [f.address for f in scan(locked)] == [0x12, 0x76]
