from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.bme280 import BME280
from drivers.emulator import EmulatedBME280, FakeSMBus, Weather, scenario
from drivers.errors import BusError, DriverError, SensorNotFound, SensorTimeout, WrongChip
from drivers.quality import Quality
from tests.drivers.conftest import ManualClock

# datasheet resolution per oversampling (°C, hPa); humidity is always 16 bit (~0.008 %RH)
RES_T = {1: 0.0050, 2: 0.0025, 4: 0.0012, 8: 0.0006, 16: 0.0003}
RES_P = {1: 0.0262, 2: 0.0131, 4: 0.0066, 8: 0.0033, 16: 0.0016}
RES_H = 0.008


@pytest.mark.parametrize("oversampling", [1, 16])
def test_read_back_within_resolution_across_the_storm(oversampling, clock):
    storm = scenario("storm")
    state = {"t": 0.0}
    chip = EmulatedBME280(lambda: storm.at(state["t"]), timing=False, seed=oversampling)
    sensor = BME280(FakeSMBus({0x76: chip}), 0x76, oversampling=oversampling, clock=clock, sleep=clock.sleep)
    worst = [0.0, 0.0, 0.0]
    for t in range(0, int(storm.duration_s) + 1, 1800):
        state["t"] = t
        truth = storm.at(t)
        m = sensor.read()
        assert m.ok, m
        errs = (abs(m["temperature_c"] - truth.temperature_c), abs(m["pressure_hpa"] - truth.pressure_hpa),
                abs(m["humidity_pct"] - truth.humidity_pct))
        worst = [max(a, b) for a, b in zip(worst, errs, strict=True)]
    # one LSB at the oversampling's resolution (+0.0002 °C: the library truncates t_fine)
    assert worst[0] <= RES_T[oversampling] * 1.1 + 0.0002
    assert worst[1] <= RES_P[oversampling] * 1.1
    assert worst[2] <= RES_H * 1.1
    assert chip.conversions == 97


def test_a_storm_really_moves_the_readings(chip, bus):
    sensor = BME280(bus)
    chip.static_truth = Weather(32.0, 75.0, 1006.0)
    calm = sensor.read()
    chip.static_truth = Weather(25.0, 98.0, 975.0)
    storm = sensor.read()
    assert calm["pressure_hpa"] - storm["pressure_hpa"] == pytest.approx(31.0, abs=0.1)
    assert storm["humidity_pct"] == pytest.approx(98.0, abs=0.05)


def test_forced_mode_waits_for_the_measuring_bit_with_real_timing():
    chip = EmulatedBME280()  # conversions take the datasheet's typical time on the real clock
    sensor = BME280(FakeSMBus({0x76: chip}), oversampling=16)
    m = sensor.read()
    assert m["temperature_c"] == pytest.approx(25.0, abs=0.01)
    assert chip.conversions == 1
    assert chip.regs[0xF4] & 0x03 == 0  # back in sleep mode after the forced conversion


def test_busy_chip_times_out_on_the_injected_clock(chip, bus, clock):
    sensor = BME280(bus, clock=clock, sleep=clock.sleep)
    sensor.probe()
    chip.inject("busy")
    with pytest.raises(SensorTimeout) as e:
        sensor.read()
    assert e.value.sensor == "bme280" and e.value.address == 0x76
    assert "status busy" in str(e.value)


def test_absent_chip_is_not_found(chip, bus):
    chip.inject("absent")
    with pytest.raises(SensorNotFound) as e:
        BME280(bus, name="weather").probe()
    assert e.value.sensor == "weather" and e.value.address == 0x76
    assert "0x76" in str(e.value) and "scan" in str(e.value)


def test_nothing_at_the_address_is_not_found(bus):
    with pytest.raises(SensorNotFound):
        BME280(bus, 0x77).read()


def test_nack_on_registers_is_a_bus_error_with_errno_121(chip, bus):
    sensor = BME280(bus)
    sensor.probe()
    chip.inject("nack")
    with pytest.raises(BusError) as e:
        sensor.read()
    assert e.value.errno == errno.EREMOTEIO
    assert isinstance(e.value, OSError) and isinstance(e.value, DriverError)
    # the chip still answers its address: probe says so rather than "not found"
    with pytest.raises(BusError):
        sensor.probe()


def test_eio_is_a_bus_error_with_errno_5(chip, bus):
    chip.inject("eio")
    with pytest.raises(BusError) as e:
        BME280(bus).read()
    assert e.value.errno == errno.EIO
    assert "EIO" in str(e.value)


def test_reads_resume_after_a_transient_fault(chip, bus):
    sensor = BME280(bus)
    assert sensor.read().ok
    chip.inject("eio")
    with pytest.raises(BusError):
        sensor.read()
    chip.clear()
    assert sensor.read()["temperature_c"] == pytest.approx(25.0, abs=0.01)


def test_bmp280_is_named(chip, bus):
    chip.inject("wrong_id")
    with pytest.raises(WrongChip, match="BMP280.*no humidity"):
        BME280(bus).probe()


def test_other_chip_id_is_wrong_chip():
    chip = EmulatedBME280(chip_id=0x61, timing=False)
    with pytest.raises(WrongChip, match="0x61"):
        BME280(FakeSMBus({0x76: chip})).probe()


def test_out_of_range_values_are_clamped_and_flagged(chip, bus):
    chip.inject("out_of_range")
    m = BME280(bus).read()
    assert (m["temperature_c"], m["pressure_hpa"], m["humidity_pct"]) == (85.0, 1100.0, 100.0)
    assert all(m.flags[q] == Quality.CLAMPED for q in m)


def test_cold_and_low_pressure_clamped_at_the_bottom(chip, bus):
    chip.static_truth = Weather(-45.0, 50.0, 280.0)
    m = BME280(bus).read()
    assert m["temperature_c"] == -40.0 and m.flags["temperature_c"] == Quality.CLAMPED
    assert m["pressure_hpa"] == 300.0 and m.flags["pressure_hpa"] == Quality.CLAMPED


def test_stuck_values_are_flagged_after_five_identical_conversions(chip, bus):
    sensor = BME280(bus)
    assert sensor.read().ok
    chip.inject("stuck")
    flags = [sensor.read().flags["temperature_c"] for _ in range(5)]
    assert flags[:3] == [0, 0, 0]
    assert flags[-1] & Quality.STUCK
    chip.clear("stuck")
    assert sensor.read().ok


def test_constructor_does_no_io_and_validates():
    class Exploding:
        def __getattr__(self, name):
            raise AssertionError("I/O in the constructor")

    BME280(Exploding(), 0x76, oversampling=4)
    with pytest.raises(ValueError, match="oversampling"):
        BME280(Exploding(), oversampling=3)


def test_emulated_soft_reset_and_register_semantics(chip, bus):
    bus.write_byte_data(0x76, 0xF5, 0xA0)
    bus.write_byte_data(0x76, 0xF2, 0x03)
    assert bus.read_byte_data(0x76, 0xF5) == 0xA0
    assert bus.read_i2c_block_data(0x76, 0xF7, 8) == [0x80, 0, 0, 0x80, 0, 0, 0x80, 0]  # no conversion yet
    bus.write_byte_data(0x76, 0xE0, 0xB6)  # soft reset
    assert bus.read_byte_data(0x76, 0xF5) == 0 and bus.read_byte_data(0x76, 0xF2) == 0
    assert bus.read_byte_data(0x76, 0xD0) == 0x60
    calib = bytes(bus.read_i2c_block_data(0x76, 0x88, 6))
    assert int.from_bytes(calib[:2], "little") == 28009  # dig_T1 of the real part


def test_bus_lock_deadline_is_a_timeout_not_a_bus_error(chip, bus):
    import threading

    held = threading.Event()
    release = threading.Event()

    def hog():
        with bus.lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hog)
    t.start()
    held.wait(2)
    try:
        from drivers.i2c import BusDeviceAdapter

        adapter = BusDeviceAdapter(bus, lock_timeout_s=0.05)  # adafruit_bus_device would spin forever
        with pytest.raises(SensorTimeout, match="busy"):
            adapter.try_lock()
    finally:
        release.set()
        t.join()


@settings(max_examples=60, deadline=None)
@given(t=st.floats(-39.0, 84.0), h=st.floats(1.0, 99.0), p=st.floats(310.0, 1090.0),
       osr=st.sampled_from([1, 2, 4, 8, 16]), seed=st.integers(0, 1000))
def test_read_back_within_one_lsb_anywhere_in_range(t, h, p, osr, seed):
    clock = ManualClock()
    chip = EmulatedBME280(timing=False, seed=seed)
    chip.static_truth = Weather(t, h, p)
    m = BME280(FakeSMBus({0x76: chip}), oversampling=osr, clock=clock, sleep=clock.sleep).read()
    assert m.ok
    assert m["temperature_c"] == pytest.approx(t, abs=RES_T[osr] * 1.1 + 0.0002)
    assert m["pressure_hpa"] == pytest.approx(p, abs=RES_P[osr] * 1.5)
    assert m["humidity_pct"] == pytest.approx(h, abs=RES_H * 1.5)
