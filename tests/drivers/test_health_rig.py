from __future__ import annotations

import pytest

from drivers.base import Measurement
from drivers.bme280 import BME280
from drivers.emulator import EmulatedRig, scenario
from drivers.errors import BusError, SensorNotFound, WrongChip
from drivers.health import UNDER_VOLTAGE_NOW, UNDER_VOLTAGE_OCCURRED, NodeHealth, describe_throttled
from drivers.pm25 import PM25
from drivers.quality import Quality
from tests.drivers.conftest import ManualClock


def plant(root, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_health_reads_files_under_root(tmp_path):
    plant(tmp_path, "sys/class/thermal/thermal_zone0/temp", "48312\n")
    plant(tmp_path, "proc/loadavg", "0.42 0.30 0.12 2/284 31305\n")
    plant(tmp_path, "proc/uptime", "86400.55 170000.00\n")
    plant(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "50005\n")
    m = NodeHealth(root=tmp_path).read()
    assert m["cpu_temp_c"] == pytest.approx(48.312)
    assert m["load_1m"] == 0.42 and m["uptime_s"] == 86400.55
    assert 0.0 < m["disk_used_pct"] < 100.0
    word = int(m["throttled"])
    assert word & UNDER_VOLTAGE_NOW and word & UNDER_VOLTAGE_OCCURRED
    assert "under-voltage now" in describe_throttled(word)
    assert m.ok


def test_health_missing_files_are_none_with_fault(tmp_path):
    plant(tmp_path, "proc/uptime", "12.0 1.0\n")
    m = NodeHealth(root=tmp_path, disk_path=tmp_path / "nope").read()
    assert m["uptime_s"] == 12.0 and m.flags["uptime_s"] == 0
    for q in ("cpu_temp_c", "load_1m", "throttled", "disk_used_pct"):
        assert m[q] is None and m.flags[q] == Quality.FAULT


def test_scenarios_are_data_with_the_storm_shape():
    storm = scenario("storm")
    assert storm.duration_s == 48 * 3600
    start, peak, end = storm(0), storm(25 * 3600), storm(48 * 3600)
    assert (start.temperature_c, start.humidity_pct, start.pressure_hpa) == (32.0, 75.0, 1006.0)
    assert peak.pressure_hpa == pytest.approx(975.5) and peak.rain_rate_mm_h == pytest.approx(59.0)
    assert min(storm(h * 3600).pressure_hpa for h in range(49)) == 975.0
    assert max(storm(h * 3600).depth_cm for h in range(49)) == 45.0 and end.depth_cm == 0.0
    assert start.pm2_5_ugm3 == 60 and storm(26 * 3600).pm2_5_ugm3 == 15
    # exact integral of a piecewise-linear rate: 6 h ramp 0 -> 2 mm/h is 6 mm
    assert storm.rain_mm(0, 6 * 3600) == pytest.approx(6.0)
    calm = scenario("calm")
    assert calm(3600).temperature_c == calm(3600 + 86400).temperature_c  # repeats daily
    assert calm.rain_mm(0, 5 * 86400) == 0.0
    with pytest.raises(ValueError, match="calm, storm"):
        scenario("hurricane")


def test_rig_truth_follows_speed_and_start():
    clock = ManualClock(0.0)
    rig = EmulatedRig("storm", speed=3600.0, clock=clock, start_s=3600.0)
    clock.advance(23.0)  # 23 s x 3600 = 23 h later
    assert rig.scenario_clock() == pytest.approx(24 * 3600.0)
    assert rig.truth().pressure_hpa == pytest.approx(975.0)


def test_rig_bus_serves_both_chips_driven_by_the_truth():
    clock = ManualClock(0.0)
    rig = EmulatedRig("storm", speed=3600.0, clock=clock, timing=False)
    bme, pm = BME280(rig.bus(1), clock=clock, sleep=clock.sleep), PM25(rig.bus(1))
    first = bme.read()
    clock.advance(24.0)
    second, air = bme.read(), pm.read()
    assert first["pressure_hpa"] == pytest.approx(1006.0, abs=0.05)
    assert second["pressure_hpa"] == pytest.approx(rig.truth().pressure_hpa, abs=0.05)
    assert air["pm2_5_ugm3"] == pytest.approx(15, abs=1)


@pytest.mark.parametrize("target, fault, error", [
    ("bme280", "absent", SensorNotFound), (0x76, "eio", BusError), ("0x76", "wrong_id", WrongChip),
    ("pm25", "nack", BusError), (0x12, "absent", SensorNotFound), ("pmsa003i", "wrong_id", WrongChip),
])
def test_rig_fault_injection_and_clear(target, fault, error):
    rig = EmulatedRig("calm", timing=False)
    sensor = BME280(rig.bus(1)) if str(target) in ("bme280", "118", "0x76") else PM25(rig.bus(1))
    rig.inject(target, fault)
    with pytest.raises(error):
        sensor.read()
    rig.clear(target)
    assert isinstance(sensor.read(), Measurement)


def test_rig_rejects_faults_that_do_not_apply():
    rig = EmulatedRig()
    with pytest.raises(ValueError, match="does not apply to flood"):
        rig.inject("flood", "eio")
    with pytest.raises(ValueError, match="unknown target"):
        rig.inject("lidar", "nack")
    with pytest.raises(ValueError, match="no emulated chip"):
        rig.inject(0x40, "nack")
    with pytest.raises(ValueError, match="does not apply to pm25"):
        rig.inject("pm25", "busy")


def test_measurement_contract():
    m = Measurement({"depth_cm": 12.5, "distance_cm": None}, {"depth_cm": int(Quality.CLAMPED)},
                    sensor="flood")
    assert dict(m) == {"depth_cm": 12.5, "distance_cm": None}
    assert m.depth_cm == 12.5 and m.flags == {"depth_cm": 1, "distance_cm": int(Quality.FAULT)}
    assert not m.ok and "clamped" in repr(m)
    failed = Measurement.failed(("a", "b"), sensor="x")
    assert list(failed.values()) == [None, None] and set(failed.flags.values()) == {int(Quality.FAULT)}
