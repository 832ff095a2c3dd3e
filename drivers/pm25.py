"""PMSA003I particulate sensor (I2C, 0x12) via adafruit-circuitpython-pm25: PM1.0/2.5/10.

The library parses and checks the 32-byte frame; this driver avoids its constructor (which
retries five times with 1 s sleeps), maps its errors to `DriverError`s, reports the
atmospheric-environment concentrations (µg/m³) and flags stuck and implausible values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from drivers.base import Measurement, StuckDetector
from drivers.errors import EIO, BusError, DriverError, SensorNotFound, WrongChip, bus_error
from drivers.i2c import BusDeviceAdapter, answers, is_absent, load_adafruit
from drivers.quality import Quality

QUANTITIES = ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3")
KEYS = {"pm1_0_ugm3": "pm10 env", "pm2_5_ugm3": "pm25 env", "pm10_ugm3": "pm100 env"}
MAX_PLAUSIBLE_UGM3 = 1000.0  # PMSA003I: effective range 0-500, maximum range >= 1000 µg/m³


def _core(adapter: Any, address: int) -> Any:
    pm25 = load_adafruit("adafruit_pm25")
    i2c_device = load_adafruit("adafruit_bus_device.i2c_device")
    core = pm25.PM25.__new__(load_adafruit("adafruit_pm25.i2c").PM25_I2C)
    pm25.PM25.__init__(core)  # buffers only; the I2C subclass's __init__ would sleep and retry
    core.i2c_device = i2c_device.I2CDevice(adapter, address, probe=False)
    return core


class PM25:
    """``PM25(bus, 0x12).read()`` -> pm1_0_ugm3, pm2_5_ugm3, pm10_ugm3."""

    quantities = QUANTITIES

    def __init__(self, bus: Any, address: int = 0x12, *, name: str = "pm25",
                 clock: Callable[[], float] = time.monotonic, stuck_reads: int = 5,
                 stuck_after_s: float = 10.0) -> None:
        self.bus, self.address, self.name = bus, address, name
        self._clock = clock
        self._core: Any = None
        self._stuck = StuckDetector(reads=stuck_reads, after_s=stuck_after_s)

    def _frame(self, probing: bool) -> dict[str, int]:
        try:
            return dict(self._core.read())
        except RuntimeError as e:
            cause = e.__cause__
            if isinstance(cause, DriverError):  # e.g. the bus lock's deadline
                raise cause from None
            if isinstance(cause, OSError):
                if probing and is_absent(cause) and not self._answers_address():
                    raise SensorNotFound("no answer (NACK) at this address", sensor=self.name,
                                         address=self.address,
                                         remedy="check wiring and power; run 'streetnode scan'") from e
                raise bus_error(cause, sensor=self.name, address=self.address, doing="reading a frame") from e
            text = str(e)
            if "checksum" in text:
                raise BusError("frame checksum mismatch (corrupted transfer)", errno=EIO,
                               sensor=self.name, address=self.address) from e
            if "header" in text or "length" in text:
                raise WrongChip(f"not a PMSA003I frame ({text})", sensor=self.name, address=self.address,
                                remedy="another part answers here, or the sensor is still starting") from e
            raise DriverError(text, sensor=self.name, address=self.address) from e

    def _answers_address(self) -> bool:
        return answers(self.bus, self.address)

    def probe(self) -> None:
        """Read and check one frame."""
        self._core = _core(BusDeviceAdapter(self.bus), self.address)
        try:
            self._frame(probing=True)
        except DriverError:
            self._core = None
            raise
        self._stuck.reset()

    def read(self) -> Measurement:
        if self._core is None:
            self.probe()
        frame = self._frame(probing=False)
        raw = bytes(self._core._buffer)
        stuck = self._stuck.update(raw, self._clock())
        values: dict[str, float | None] = {}
        flags: dict[str, int] = {}
        for q in QUANTITIES:
            v = float(frame[KEYS[q]])
            values[q] = v
            flags[q] = int(Quality.OUT_OF_RANGE) if v > MAX_PLAUSIBLE_UGM3 else 0
            if stuck:
                flags[q] |= Quality.STUCK
        return Measurement(values, flags, sensor=self.name)

    def close(self) -> None:
        self._core = None
