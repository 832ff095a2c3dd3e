"""BME280 (temperature, humidity, pressure) over any smbus2-like bus, in forced mode.

Chip logic and Bosch's compensation come from adafruit_bme280 (not rewritten here). This
driver owns what the library lacks: a chip-ID check that names a BMP280, forced-mode
conversions with a deadline (the library's wait loop has none), one burst read of the data
registers per reading, clamping to the chip's range with quality flags, stuck detection,
and `DriverError`s naming the sensor, address and cause.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from drivers.base import Measurement, StuckDetector
from drivers.errors import (
    BusError,
    DriverError,
    SensorNotFound,
    SensorTimeout,
    WrongChip,
    bus_error,
)
from drivers.i2c import BusDeviceAdapter, answers, is_absent, load_adafruit
from drivers.quality import Quality

REG_CALIB_00 = 0x88
REG_CHIP_ID = 0xD0
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_DATA = 0xF7
DATA_LEN = 8
CHIP_ID_BME280 = 0x60
CHIP_ID_BMP280 = 0x58
STATUS_MEASURING = 0x08
MODE_FORCED = 0x01
OVERSAMPLING = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}  # factor -> osrs register code
RANGE_T = (-40.0, 85.0)
RANGE_P = (300.0, 1100.0)
RANGE_H = (0.0, 100.0)
SKIPPED_20 = 0x80000
POLL_S = 0.001

QUANTITIES = ("temperature_c", "humidity_pct", "pressure_hpa")


def measurement_time_max_s(oversampling: int) -> float:
    """Datasheet maximum measurement time (T, P and H at the same oversampling)."""
    return (1.25 + 2.3 * oversampling * 3 + 0.575 * 2) / 1000.0


class _SnapshotProtocol:
    """adafruit_bme280's transport: real registers, or the latched data while computing."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.snapshot: bytes | None = None

    def read_register(self, register: int, length: int) -> bytearray:
        snap = self.snapshot
        if snap is not None and register >= REG_DATA and register + length <= REG_DATA + DATA_LEN:
            off = register - REG_DATA
            return bytearray(snap[off:off + length])
        return self.inner.read_register(register, length)

    def write_register_byte(self, register: int, value: int) -> None:
        self.inner.write_register_byte(register, value)


def _core_class() -> type:
    advanced = load_adafruit("adafruit_bme280.advanced")

    class Core(advanced.Adafruit_BME280_Advanced):
        """The library's compensation over our latched snapshot (never its own wait loop)."""

        @property
        def mode(self) -> int:
            # While a snapshot is latched, look like normal mode so the library reads the
            # data registers without triggering (and waiting for) a conversion of its own.
            if self._bus_implementation.snapshot is not None:
                return advanced.MODE_NORMAL
            return self._mode

        @mode.setter
        def mode(self, value: int) -> None:
            advanced.Adafruit_BME280_Advanced.mode.fset(self, value)

    return Core


class BME280:
    """``BME280(bus, 0x76).read()`` -> temperature_c, humidity_pct, pressure_hpa."""

    quantities = QUANTITIES

    def __init__(self, bus: Any, address: int = 0x76, *, name: str = "bme280", oversampling: int = 1,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 stuck_reads: int = 5) -> None:
        if oversampling not in OVERSAMPLING:
            raise ValueError(f"oversampling: expected one of 1, 2, 4, 8, 16, got {oversampling!r}")
        self.bus, self.address, self.name = bus, address, name
        self.oversampling = oversampling
        self._clock, self._sleep = clock, sleep
        self._core: Any = None
        self._proto: _SnapshotProtocol | None = None
        self._stuck = StuckDetector(reads=stuck_reads)

    # ---------------------------------------------------------- helpers
    def _err(self, exc: OSError, doing: str) -> BusError:
        return bus_error(exc, sensor=self.name, address=self.address, doing=doing)

    def _answers_address(self) -> bool:
        return answers(self.bus, self.address)

    # ---------------------------------------------------------- public API
    def probe(self) -> None:
        """Check the chip ID, reset it, load calibration, set oversampling (sleep mode)."""
        self._core = None
        try:
            chip_id = self.bus.read_byte_data(self.address, REG_CHIP_ID)
        except DriverError:
            raise
        except OSError as e:
            if is_absent(e) and not self._answers_address():
                raise SensorNotFound(
                    "no answer (NACK) at this address", sensor=self.name, address=self.address,
                    remedy="check wiring and power; SDO to GND is 0x76, to 3V3 is 0x77; "
                    "run 'streetnode scan'") from e
            raise self._err(e, "reading chip ID") from e
        if chip_id == CHIP_ID_BMP280:
            raise WrongChip(
                f"chip ID 0x{chip_id:02x} is a BMP280 (temperature and pressure only, no humidity), "
                "not a BME280 (0x60)", sensor=self.name, address=self.address,
                remedy="fit a BME280 or remove humidity from this node")
        if chip_id != CHIP_ID_BME280:
            raise WrongChip(f"chip ID 0x{chip_id:02x}, expected 0x60 (BME280)", sensor=self.name,
                            address=self.address, remedy="another part answers here; run 'streetnode scan'")
        try:
            calib = bytes(self.bus.read_i2c_block_data(self.address, REG_CALIB_00, 24))
            if calib in (bytes(24), b"\xff" * 24):
                raise DriverError("calibration registers read all 0x00/0xFF", sensor=self.name,
                                  address=self.address, remedy="the chip is damaged or not powered")
            protocol = load_adafruit("adafruit_bme280.protocol")
            proto = _SnapshotProtocol(protocol.I2C_Impl(BusDeviceAdapter(self.bus), self.address))
            core = _core_class()(proto)
            code = OVERSAMPLING[self.oversampling]
            core.overscan_humidity = code
            core.overscan_temperature = code
            core.overscan_pressure = code
        except DriverError:
            raise
        except OSError as e:
            raise self._err(e, "initialising") from e
        except (RuntimeError, ValueError) as e:  # the library's own complaints
            raise DriverError(f"initialising: {e}", sensor=self.name, address=self.address) from e
        self._proto, self._core = proto, core
        self._stuck.reset()

    def _convert(self) -> bytes:
        """One forced-mode conversion: trigger, wait (deadline), burst-read the data."""
        code = OVERSAMPLING[self.oversampling]
        try:
            self.bus.write_byte_data(self.address, REG_CTRL_HUM, code)
            self.bus.write_byte_data(self.address, REG_CTRL_MEAS, (code << 5) | (code << 2) | MODE_FORCED)
            t_max = measurement_time_max_s(self.oversampling)
            start = self._clock()
            deadline = start + 2 * t_max + 0.05
            self._sleep(t_max * 0.8)
            while self.bus.read_byte_data(self.address, REG_STATUS) & STATUS_MEASURING:
                if self._clock() > deadline:
                    raise SensorTimeout(
                        f"conversion not finished after {deadline - start:.3f} s (status busy)",
                        sensor=self.name, address=self.address, remedy="power-cycle the sensor")
                self._sleep(POLL_S)
            data = bytearray(self.bus.read_i2c_block_data(self.address, REG_DATA, DATA_LEN))
        except DriverError:
            raise
        except OSError as e:
            raise self._err(e, "reading a conversion") from e
        data[2] &= 0xF0  # xlsb: only bits 7..4 carry data
        data[5] &= 0xF0
        return bytes(data)

    def read(self) -> Measurement:
        if self._core is None:
            self.probe()
        assert self._proto is not None
        raw = self._convert()
        adc_t = (raw[3] << 12) | (raw[4] << 4) | (raw[5] >> 4)
        adc_p = (raw[0] << 12) | (raw[1] << 4) | (raw[2] >> 4)
        adc_h = (raw[6] << 8) | raw[7]
        if adc_t == SKIPPED_20:
            raise SensorTimeout("no conversion result (data registers hold their reset value)",
                                sensor=self.name, address=self.address)
        stuck = self._stuck.update(raw, self._clock())
        self._proto.snapshot = raw
        values: dict[str, float | None] = {}
        flags: dict[str, int] = {}
        try:
            t = float(self._core.temperature)
            values["temperature_c"], flags["temperature_c"] = _clamp(t, RANGE_T)
            try:
                p = float(self._core.pressure) if adc_p != SKIPPED_20 else None
            except (ArithmeticError, ValueError):
                p = None
            values["pressure_hpa"], flags["pressure_hpa"] = _clamp(p, RANGE_P)
            h = float(self._core.humidity) if adc_h != 0x8000 else None
            values["humidity_pct"], flags["humidity_pct"] = _clamp(h, RANGE_H, inclusive_edge=True)
        finally:
            self._proto.snapshot = None
        if stuck:
            flags = {q: f | Quality.STUCK for q, f in flags.items()}
        return Measurement({q: values[q] for q in QUANTITIES}, flags, sensor=self.name)

    def close(self) -> None:
        self._core = None
        self._proto = None


def _clamp(v: float | None, rng: tuple[float, float],
           inclusive_edge: bool = False) -> tuple[float | None, int]:
    """Clamp to the chip's range and flag it (the library clamps humidity itself: a value
    exactly on an edge means it was clamped)."""
    if v is None:
        return None, int(Quality.FAULT)
    lo, hi = rng
    if v < lo or (inclusive_edge and v <= lo):
        return lo, int(Quality.CLAMPED)
    if v > hi or (inclusive_edge and v >= hi):
        return hi, int(Quality.CLAMPED)
    return v, 0
