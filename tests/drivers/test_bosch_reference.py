"""The BME280 driver through a fake SMBus that is NOT the project's own, against Bosch.

The fake below implements only smbus2.SMBus's methods over a plain register file holding
a real BME280's calibration and raw ADC values; the expected values come from Bosch's
reference double-precision compensation (BME280_driver, bme280.c), written out here.
"""

from __future__ import annotations

import ctypes
import struct

import pytest

from drivers.bme280 import BME280

# A real part's calibration and raw readings (Pimoroni bme280-python's test data).
CAL = dict(T1=28009, T2=25654, T3=50, P1=39145, P2=-10750, P3=3024, P4=5667, P5=-120, P6=-7,
           P7=15500, P8=-14600, P9=6000, H1=75, H2=376, H3=0, H4=286, H5=50, H6=30)
RAW = [(529191, 326816, 30281), (519888, 415148, 25000), (490000, 300000, 40000), (560000, 350000, 20000)]


class TinySMBus:
    """Registers in a bytearray; a forced conversion completes at once. smbus2's methods only."""

    def __init__(self, adc_t: int, adc_p: int, adc_h: int) -> None:
        r = bytearray(256)
        r[0x88:0xA0] = struct.pack("<HhhHhhhhhhhh", *(CAL[k] for k in (
            "T1", "T2", "T3", "P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9")))
        r[0xA1] = CAL["H1"]
        r[0xE1:0xE4] = struct.pack("<hB", CAL["H2"], CAL["H3"])
        r[0xE4] = CAL["H4"] >> 4
        r[0xE5] = (CAL["H4"] & 0xF) | ((CAL["H5"] & 0xF) << 4)
        r[0xE6] = CAL["H5"] >> 4
        r[0xE7] = CAL["H6"] & 0xFF
        r[0xD0] = 0x60
        r[0xF7:0xFF] = bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4,
                              adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4, adc_h >> 8, adc_h & 0xFF])
        self.regs, self.ptr, self.writes = r, 0, []

    def _write(self, data: bytes) -> None:
        if data:
            self.ptr = data[0]
            if len(data) > 1:
                self.writes.append((data[0], data[1]))
                if data[0] not in (0xE0, 0xF3) and data[0] < 0xF7:
                    self.regs[data[0]] = data[1]
            if data[0] == 0xF4:
                self.regs[0xF4] &= 0xFC  # conversion done at once, back to sleep

    def _read(self, n: int) -> bytes:
        out = bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out

    def read_byte_data(self, addr, reg):
        self._write(bytes([reg]))
        return self._read(1)[0]

    def write_byte_data(self, addr, reg, value):
        self._write(bytes([reg, value]))

    def read_i2c_block_data(self, addr, reg, length):
        self._write(bytes([reg]))
        return list(self._read(length))

    def write_i2c_block_data(self, addr, reg, data):
        self._write(bytes([reg, *data]))

    def i2c_rdwr(self, *msgs):
        for m in msgs:
            if m.flags & 1:
                ctypes.memmove(m.buf, self._read(m.len), m.len)
            else:
                self._write(ctypes.string_at(m.buf, m.len))


def bosch_double(adc_t: int, adc_p: int, adc_h: int) -> tuple[float, float, float]:
    """compensate_temperature/pressure/humidity, double versions, from Bosch's bme280.c."""
    c = CAL
    var1 = (adc_t / 16384.0 - c["T1"] / 1024.0) * c["T2"]
    var2 = (adc_t / 131072.0 - c["T1"] / 8192.0)
    var2 = var2 * var2 * c["T3"]
    t_fine = int(var1 + var2)
    temperature = min(max((var1 + var2) / 5120.0, -40.0), 85.0)

    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c["P6"] / 32768.0
    var2 = var2 + var1 * c["P5"] * 2.0
    var2 = var2 / 4.0 + c["P4"] * 65536.0
    var3 = c["P3"] * var1 * var1 / 524288.0
    var1 = (var3 + c["P2"] * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c["P1"]
    pressure = 30000.0
    if var1 > 0:
        pressure = 1048576.0 - adc_p
        pressure = (pressure - var2 / 4096.0) * 6250.0 / var1
        var1 = c["P9"] * pressure * pressure / 2147483648.0
        var2 = pressure * c["P8"] / 32768.0
        pressure = pressure + (var1 + var2 + c["P7"]) / 16.0
        pressure = min(max(pressure, 30000.0), 110000.0)

    var1 = t_fine - 76800.0
    var2 = c["H4"] * 64.0 + (c["H5"] / 16384.0) * var1
    var3 = adc_h - var2
    var4 = c["H2"] / 65536.0
    var5 = 1.0 + (c["H3"] / 67108864.0) * var1
    var6 = 1.0 + (c["H6"] / 67108864.0) * var1 * var5
    var6 = var3 * var4 * (var5 * var6)
    humidity = min(max(var6 * (1.0 - c["H1"] * var6 / 524288.0), 0.0), 100.0)
    return temperature, pressure / 100.0, humidity


@pytest.mark.parametrize("raw", RAW)
def test_driver_matches_bosch_reference_through_a_foreign_fake_bus(raw):
    bus = TinySMBus(*raw)
    m = BME280(bus, 0x76, oversampling=2).read()
    t, p, h = bosch_double(*raw)
    assert m["temperature_c"] == pytest.approx(t, abs=0.01)
    assert m["pressure_hpa"] == pytest.approx(p, abs=0.01)
    assert m["humidity_pct"] == pytest.approx(h, abs=0.01)
    # the driver asked for a forced conversion at the configured oversampling
    assert (0xF4, (2 << 5) | (2 << 2) | 1) in bus.writes
    assert (0xF2, 2) in bus.writes


def test_known_answer_from_the_reference_data():
    # Pimoroni's published results for this part: 24.7894877676 °C, 1006.61517564 hPa, 68.66996648709039 %
    m = BME280(TinySMBus(*RAW[0]), 0x76).read()
    assert m["temperature_c"] == pytest.approx(24.7894877676, abs=0.001)
    assert m["pressure_hpa"] == pytest.approx(1006.61517564, abs=0.01)
    assert m["humidity_pct"] == pytest.approx(68.66996648709039, abs=0.01)
    assert m.ok
