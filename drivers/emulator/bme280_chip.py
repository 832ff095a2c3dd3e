"""A register-level BME280: calibration from a real part, forced/normal mode conversions.

A conversion latches raw ADC values computed from the physical truth by inverting the
datasheet's compensation (bisection over the ADC code, then rounding to the oversampling's
resolution with +-half an LSB of dither as noise), so a driver using any correct
compensation reads the truth back within one LSB.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.emulator.fakebus import BUS_FAULTS, EmulatedChip

# Calibration of a real BME280 (published with Pimoroni's bme280-python tests).
REAL_CALIBRATION: dict[str, int] = {
    "T1": 28009, "T2": 25654, "T3": 50,
    "P1": 39145, "P2": -10750, "P3": 3024, "P4": 5667, "P5": -120, "P6": -7,
    "P7": 15500, "P8": -14600, "P9": 6000,
    "H1": 75, "H2": 376, "H3": 0, "H4": 286, "H5": 50, "H6": 30,
}

REG_CALIB_00 = 0x88
REG_H1 = 0xA1
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB_26 = 0xE1
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7
RESET_WORD = 0xB6
BME280_ID = 0x60
BMP280_ID = 0x58
STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01
SKIPPED_20 = 0x80000
SKIPPED_16 = 0x8000
OSRS_FACTOR = {0: 0, 1: 1, 2: 2, 3: 4, 4: 8, 5: 16, 6: 16, 7: 16}
STANDBY_S = {0: 0.0005, 1: 0.0625, 2: 0.125, 3: 0.25, 4: 0.5, 5: 1.0, 6: 0.01, 7: 0.02}

# what the out_of_range fault makes the chip "feel"
OUT_OF_RANGE_TRUTH = {"temperature_c": 97.0, "humidity_pct": 112.0, "pressure_hpa": 1160.0}


@dataclass(frozen=True)
class Weather:
    temperature_c: float = 25.0
    humidity_pct: float = 50.0
    pressure_hpa: float = 1013.25


def calibration_bytes(cal: dict[str, int]) -> tuple[bytes, int, bytes]:
    """(0x88..0x9F, 0xA1, 0xE1..0xE7) register contents for a calibration set."""
    block1 = struct.pack("<HhhHhhhhhhhh", cal["T1"], cal["T2"], cal["T3"], cal["P1"], cal["P2"],
                         cal["P3"], cal["P4"], cal["P5"], cal["P6"], cal["P7"], cal["P8"], cal["P9"])
    h4, h5 = cal["H4"], cal["H5"]
    block2 = struct.pack("<hB", cal["H2"], cal["H3"]) + bytes([
        (h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF,
    ]) + struct.pack("<b", cal["H6"])
    return block1, cal["H1"], block2


# ----------------------------------------------------- the chip's forward model
# The datasheet's floating-point compensation (section 8.1) without its range clamps: the
# emulated chip picks the ADC codes this model maps onto the truth. (The datasheet's int32
# version steps in ~0.0024 °C, coarser than the chip's 20-bit resolution, so it can't serve.)
def t_fine_of(adc_t: float, c: dict[str, int]) -> float:
    var1 = (adc_t / 16384.0 - c["T1"] / 1024.0) * c["T2"]
    var2 = adc_t / 131072.0 - c["T1"] / 8192.0
    return var1 + var2 * var2 * c["T3"]


def pressure_pa(adc_p: float, t_fine: int, c: dict[str, int]) -> float:
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c["P6"] / 32768.0 + var1 * c["P5"] * 2.0
    var2 = var2 / 4.0 + c["P4"] * 65536.0
    var1 = (c["P3"] * var1 * var1 / 524288.0 + c["P2"] * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c["P1"]
    p = (1048576.0 - adc_p - var2 / 4096.0) * 6250.0 / var1
    return p + (c["P9"] * p * p / 2147483648.0 + p * c["P8"] / 32768.0 + c["P7"]) / 16.0


def humidity_pct(adc_h: float, t_fine: int, c: dict[str, int]) -> float:
    v = t_fine - 76800.0
    h = (adc_h - (c["H4"] * 64.0 + c["H5"] / 16384.0 * v)) * (c["H2"] / 65536.0 * (
        1.0 + c["H6"] / 67108864.0 * v * (1.0 + c["H3"] / 67108864.0 * v)) * (1.0 + c["H3"] / 67108864.0 * v))
    return h * (1.0 - c["H1"] * h / 524288.0)


def _invert(f: Callable[[int], float], target: float, bits: int, increasing: bool) -> float:
    """Fractional ADC value where monotonic ``f`` crosses ``target`` (bisection)."""
    lo, hi = 0, (1 << bits) - 1
    sign = 1 if increasing else -1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if sign * f(mid) <= sign * target:
            lo = mid
        else:
            hi = mid
    f_lo, f_hi = f(lo), f(hi)
    if f_hi == f_lo:
        return float(lo)
    return lo + (target - f_lo) / (f_hi - f_lo)


class EmulatedBME280(EmulatedChip):
    """BME280 registers behind `FakeSMBus`. ``truth()`` gives temperature/humidity/pressure.

    Faults: absent, nack, eio (bus level), wrong_id (reads ``wrong_id``, default a BMP280's
    0x58), stuck (conversions keep the old data), out_of_range (the chip feels 97 °C,
    112 %RH, 1160 hPa), busy (the measuring bit never clears).
    """

    kind = "bme280"
    FAULTS = BUS_FAULTS | {"wrong_id", "stuck", "out_of_range", "busy"}

    def __init__(self, truth: Callable[[], Any] | None = None, *,
                 calibration: dict[str, int] | None = None, chip_id: int = BME280_ID,
                 wrong_id: int = BMP280_ID, clock: Callable[[], float] = time.monotonic,
                 timing: bool = True, noise: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.static_truth = Weather()
        self._truth = truth or (lambda: self.static_truth)
        self.cal = dict(calibration or REAL_CALIBRATION)
        self.chip_id, self.wrong_id = chip_id, wrong_id
        self._clock, self.timing, self.noise = clock, timing, noise
        self._rng = random.Random(seed)
        self.conversions = 0
        self._pointer = 0
        self._reset_registers()

    # ---------------------------------------------------------- registers
    def _reset_registers(self) -> None:
        self.regs = bytearray(256)
        b1, h1, b2 = calibration_bytes(self.cal)
        self.regs[REG_CALIB_00:REG_CALIB_00 + len(b1)] = b1
        self.regs[REG_H1] = h1
        self.regs[REG_CALIB_26:REG_CALIB_26 + len(b2)] = b2
        self.regs[REG_CHIP_ID] = self.chip_id
        self.regs[REG_DATA:REG_DATA + 8] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
        self._ctrl_hum_latched = 0
        self._pending: bytes | None = None
        self._done_at = 0.0
        self._next_normal_at = 0.0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pointer = data[0]
        rest = data[1:]
        if rest:  # the BME280 takes (register, value) pairs after the first register
            self._write_reg(data[0], rest[0])
            for i in range(1, len(rest) - 1, 2):
                self._write_reg(rest[i], rest[i + 1])

    def read(self, length: int) -> bytes:
        self._update()
        out = bytes(self._read_reg((self._pointer + i) & 0xFF) for i in range(length))
        self._pointer = (self._pointer + length) & 0xFF
        return out

    def _read_reg(self, reg: int) -> int:
        if reg == REG_CHIP_ID:
            return self.wrong_id if "wrong_id" in self.faults else self.chip_id
        if reg == REG_STATUS:
            return STATUS_MEASURING if self._pending is not None else 0
        if reg == REG_RESET:
            return 0
        return self.regs[reg]

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == REG_RESET:
            if value == RESET_WORD:
                self._reset_registers()
            return
        if reg == REG_CTRL_HUM:
            self.regs[reg] = value & 0x07
        elif reg == REG_CTRL_MEAS:
            self.regs[reg] = value
            self._ctrl_hum_latched = self.regs[REG_CTRL_HUM]
            mode = value & 0x03
            if mode in (1, 2):
                self._start_conversion()
            elif mode == 3:
                self._next_normal_at = self._clock()
        elif reg == REG_CONFIG:
            self.regs[reg] = value
        # every other register is read-only

    # ---------------------------------------------------------- conversions
    def measurement_time_s(self) -> float:
        """Typical measurement time from the datasheet for the current oversampling."""
        ot, op = OSRS_FACTOR[self.regs[REG_CTRL_MEAS] >> 5], OSRS_FACTOR[(self.regs[REG_CTRL_MEAS] >> 2) & 7]
        oh = OSRS_FACTOR[self._ctrl_hum_latched]
        ms = 1.0 + 2.0 * ot + (2.0 * op + 0.5 if op else 0) + (2.0 * oh + 0.5 if oh else 0)
        return ms / 1000.0

    def _start_conversion(self) -> None:
        self._pending = self._convert()
        self._done_at = self._clock() + (self.measurement_time_s() if self.timing else 0.0)

    def _update(self) -> None:
        now = self._clock()
        if self._pending is not None and "busy" not in self.faults and now >= self._done_at:
            if "stuck" not in self.faults or self.conversions == 0:  # stuck after its first result
                self.regs[REG_DATA:REG_DATA + 8] = self._pending
            self._pending = None
            self.conversions += 1
            if self.regs[REG_CTRL_MEAS] & 0x03 != 3:
                self.regs[REG_CTRL_MEAS] &= 0xFC  # forced mode returns to sleep
        if self.regs[REG_CTRL_MEAS] & 0x03 == 3 and self._pending is None and now >= self._next_normal_at:
            self._start_conversion()
            t_sb = STANDBY_S[self.regs[REG_CONFIG] >> 5]
            self._next_normal_at = now + self.measurement_time_s() + t_sb
            self._update()

    def _quantize(self, exact: float, bits: int, step_bits: int) -> int:
        step = 1 << (bits - step_bits)
        if self.noise:
            exact += self._rng.uniform(-0.5, 0.5) * step
        q = int(round(exact / step)) * step
        return max(0, min(q, (1 << bits) - step))

    def _convert(self) -> bytes:
        truth = self._truth()
        t = float(getattr(truth, "temperature_c", 25.0))
        h = float(getattr(truth, "humidity_pct", 50.0))
        p = float(getattr(truth, "pressure_hpa", 1013.25))
        if "out_of_range" in self.faults:
            t, h, p = (OUT_OF_RANGE_TRUTH[k] for k in ("temperature_c", "humidity_pct", "pressure_hpa"))
        ctrl = self.regs[REG_CTRL_MEAS]
        osrs_t, osrs_p, osrs_h = ctrl >> 5, (ctrl >> 2) & 7, self._ctrl_hum_latched
        c = self.cal
        if osrs_t:
            bits_t = 15 + min(osrs_t, 5)
            exact = _invert(lambda a: t_fine_of(a, c) / 5120.0, t, 20, True)
            adc_t = self._quantize(exact, 20, bits_t)
        else:
            adc_t = SKIPPED_20
        t_fine = int(t_fine_of(adc_t, c))
        if osrs_p and osrs_t:
            bits_p = 15 + min(osrs_p, 5)
            exact = _invert(lambda a: pressure_pa(a, t_fine, c), p * 100.0, 20, False)
            adc_p = self._quantize(exact, 20, bits_p)
        else:
            adc_p = SKIPPED_20
        if osrs_h and osrs_t:
            exact = _invert(lambda a: humidity_pct(a, t_fine, c), h, 16, True)
            adc_h = self._quantize(exact, 16, 16)
        else:
            adc_h = SKIPPED_16
        return bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                      adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
                      adc_h >> 8, adc_h & 0xFF])
