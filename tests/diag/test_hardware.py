"""I2C checks against register-level emulated chips on the drivers' fake bus (no real hardware)."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.emulator.bme280_chip import EmulatedBME280, Weather
from drivers.emulator.fakebus import FakeSMBus
from drivers.emulator.pmsa003i_chip import EmulatedPMSA003I
from node.diag.checks import build_checks
from node.diag.core import Runner, Status
from tests.diag.conftest import by_id, config_text, context

I2C_ONLY = "\n[[sensors]]\ntype = \"bme280\"\nname = \"weather\"\naddress = {addr}\n" \
           "\n[[sensors]]\ntype = \"pm25\"\nname = \"air\"\n"


class Bench:
    """A workbench: emulated chips on one fake bus, mock pins (what the rig is made of)."""

    def __init__(self):
        self.bme = EmulatedBME280(timing=False)
        self.pm = EmulatedPMSA003I()
        self.smbus = FakeSMBus({0x76: self.bme, 0x12: self.pm})
        self.pin_factory = MockFactory()

    def bus(self, n):
        return self.smbus

    def prepare(self, cfg):
        return None


@pytest.fixture
def bench():
    return Bench()


def run_hw(tmp_path, state_dir, sysroot, bench, addr="0x76"):
    text = config_text(state_dir)
    head = text.split("[[sensors]]")[0]
    cfg = tmp_path / "i2c.toml"
    cfg.write_text(head + I2C_ONLY.format(addr=addr))
    ctx = context(cfg, sysroot, emulate="bench")
    ctx.scratch["hardware"] = bench
    checks = [c for c in build_checks(ctx) if c.id.startswith(("i2c", "sensor"))]
    return Runner(checks).run(ctx)


def test_healthy_bench_passes(tmp_path, state_dir, sysroot, bench):
    results = run_hw(tmp_path, state_dir, sysroot, bench)
    assert [r.status for r in results] == [Status.PASS] * len(results), results
    scan = by_id(results, "i2c.scan.bus1")
    assert "0x12 PMSA003I (air)" in scan.summary and "0x76 BME280 (weather)" in scan.summary
    weather = by_id(results, "sensor.weather")
    assert "temperature_c=" in weather.summary and "pressure_hpa=" in weather.summary
    assert "pm2_5_ugm3=" in by_id(results, "sensor.air").summary


def test_missing_sensor_fails_the_scan_with_the_wiring_remedy(tmp_path, state_dir, sysroot, bench):
    bench.bme.inject("absent")
    results = run_hw(tmp_path, state_dir, sysroot, bench)
    scan = by_id(results, "i2c.scan.bus1")
    assert scan.status is Status.FAIL
    assert scan.summary == "weather (bme280): nothing answers at 0x76"
    assert "SDA = GPIO2" in scan.remedy
    assert by_id(results, "sensor.weather").status is Status.SKIP
    assert by_id(results, "sensor.air").status is Status.PASS


def test_sensor_at_the_other_address_says_which(tmp_path, state_dir, sysroot, bench):
    results = run_hw(tmp_path, state_dir, sysroot, bench, addr="0x77")
    scan = by_id(results, "i2c.scan.bus1")
    assert scan.status is Status.FAIL
    assert "is not at 0x77 but a BME280 answers at 0x76" in scan.summary
    assert scan.remedy.startswith("set address = 0x76 in the [[sensors]] block 'weather'")


def test_unexpected_device_warns(tmp_path, state_dir, sysroot, bench):
    bench.smbus.attach(0x48, EmulatedPMSA003I())
    scan = by_id(run_hw(tmp_path, state_dir, sysroot, bench), "i2c.scan.bus1")
    assert scan.status is Status.WARN and "unexpected device(s) on bus 1: 0x48 (ADS1115)" in scan.summary


def test_wrong_chip_fails_the_sensor(tmp_path, state_dir, sysroot, bench):
    bench.bme.inject("wrong_id")
    weather = by_id(run_hw(tmp_path, state_dir, sysroot, bench), "sensor.weather")
    assert weather.status is Status.FAIL
    assert "0x58" in weather.summary and "BMP280 has no humidity" in weather.remedy


def test_bus_errors_fail_the_sensor(tmp_path, state_dir, sysroot, bench):
    bench.pm.inject("nack")
    air = by_id(run_hw(tmp_path, state_dir, sysroot, bench), "sensor.air")
    assert air.status is Status.FAIL and "loose contacts" in air.remedy


def test_out_of_range_reading_fails_plausibility(tmp_path, state_dir, sysroot, bench):
    bench.bme.inject("out_of_range")
    weather = by_id(run_hw(tmp_path, state_dir, sysroot, bench), "sensor.weather")
    assert weather.status is Status.FAIL, weather


def test_saturated_humidity_warns(tmp_path, state_dir, sysroot, bench):
    wet = Weather(temperature_c=24.0, humidity_pct=100.0, pressure_hpa=1008.0)
    # noise: a real ADC is never constant, and 5 equal conversions are STUCK
    bench.smbus.attach(0x76, EmulatedBME280(lambda: wet, timing=False, noise=True))
    weather = by_id(run_hw(tmp_path, state_dir, sysroot, bench), "sensor.weather")
    assert weather.status is Status.WARN, weather
    assert "humidity at 100.0 %: saturated" in weather.summary and "radiation shield" in weather.remedy


def _gpio_results(config_file, sysroot, hold_pins, state=None, state_dir=None):
    import time as _time

    from gpiozero import DigitalInputDevice, DigitalOutputDevice

    from node.agent import write_state
    if state is not None:
        write_state(state_dir, {"pid": 1, "updated_at": _time.time(), "sensors": state})
    ctx = context(config_file, sysroot, emulate="calm")
    factory = ctx.rig().pin_factory  # the rig as the running daemon would have it
    held = [DigitalOutputDevice(23, pin_factory=factory), DigitalInputDevice(17, pin_factory=factory)] \
        if hold_pins else []
    try:
        checks = [c for c in build_checks(ctx) if c.id in ("gpio", "sensor.flood", "sensor.rain")]
        return Runner(checks).run(ctx)
    finally:
        for d in held:
            d.close()


def test_pins_held_by_another_program_fail_with_the_remedy(config_file, sysroot):
    results = _gpio_results(config_file, sysroot, hold_pins=True)
    gpio = by_id(results, "gpio")
    assert gpio.status is Status.FAIL and "GPIO23 (flood.trigger_pin)" in gpio.summary
    assert "sudo systemctl stop streetnode" in gpio.remedy
    assert by_id(results, "sensor.flood").status is Status.SKIP


def test_pins_held_by_the_running_daemon_report_the_daemons_view(config_file, sysroot, state_dir):
    daemon = [{"name": "flood", "state": "ok", "reads": 120, "faults": 0},
              {"name": "rain", "state": "fault", "error": "rain: reed contact closed for 60 s"}]
    results = _gpio_results(config_file, sysroot, hold_pins=True, state=daemon, state_dir=state_dir)
    gpio = by_id(results, "gpio")
    assert gpio.status is Status.PASS
    assert "GPIO23 (flood.trigger_pin) held by the running daemon" in gpio.summary
    flood = by_id(results, "sensor.flood")
    assert flood.status is Status.PASS and "held by the running daemon, which reads it fine" in flood.summary
    rain = by_id(results, "sensor.rain")
    assert rain.status is Status.FAIL and "reed contact closed" in rain.summary
    assert "reed-switch cable" in rain.remedy


def test_free_pins_are_read_directly(config_file, sysroot):
    results = _gpio_results(config_file, sysroot, hold_pins=False)
    assert by_id(results, "gpio").status is Status.PASS
    assert by_id(results, "sensor.flood").status is Status.PASS
    assert by_id(results, "sensor.rain").status is Status.PASS
