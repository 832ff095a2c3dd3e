"""A PMSA003I (Plantower, I2C address 0x12) at its frame level.

The sensor serves a 32-byte frame from register 0x00: ``"BM"``, frame length 28, thirteen
big-endian words (PM1.0/PM2.5/PM10 at CF=1, the same at atmospheric conditions, six
particle counts per 0.1 L, version/error) and a 16-bit checksum of the first 30 bytes.
A new frame is computed from the truth once per ``update_s`` of the chip's clock.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import Any

from drivers.emulator.fakebus import BUS_FAULTS, EmulatedChip

FRAME_LEN = 32
VERSION = 0x80
OUT_OF_RANGE_PM = (1400.0, 1800.0, 2300.0)  # what the out_of_range fault reports (µg/m³)


def build_frame(pm1: float, pm25: float, pm10: float, counts: tuple[int, ...],
                header: bytes = b"BM", error: int = 0) -> bytes:
    def cf1(v: float) -> int:  # Plantower: CF=1 equals atmospheric below ~30 µg/m³, higher above
        return int(round(v if v < 30 else 30 + (v - 30) * 1.5))

    atm = [int(round(max(0.0, v))) for v in (pm1, pm25, pm10)]
    words = [cf1(v) for v in atm] + atm + [int(c) for c in counts] + [(VERSION << 8) | error]
    body = header + struct.pack(">H", 28) + struct.pack(">13H", *(min(w, 0xFFFF) for w in words))
    return body + struct.pack(">H", sum(body) & 0xFFFF)


class EmulatedPMSA003I(EmulatedChip):
    """``truth()`` gives pm1_0_ugm3 / pm2_5_ugm3 / pm10_ugm3. Faults: absent, nack, eio,
    wrong_id (frames without the "BM" header), stuck (the frame never changes),
    out_of_range (1400/1800/2300 µg/m³)."""

    kind = "pm25"
    FAULTS = BUS_FAULTS | {"wrong_id", "stuck", "out_of_range"}

    def __init__(self, truth: Callable[[], Any] | None = None, *,
                 clock: Callable[[], float] = time.monotonic, update_s: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.static_truth: dict[str, float] = {"pm1_0_ugm3": 10.0, "pm2_5_ugm3": 15.0, "pm10_ugm3": 20.0}
        self._truth = truth or (lambda: self.static_truth)
        self._clock, self.update_s = clock, update_s
        self._rng = random.Random(seed)
        self._frame: bytes | None = None
        self._frame_at = float("-inf")
        self._pointer = 0
        self.frames = 0

    def _value(self, truth: Any, key: str) -> float:
        if isinstance(truth, dict):
            return float(truth[key])
        return float(getattr(truth, key))

    def _new_frame(self) -> bytes:
        truth = self._truth()
        pm1, pm25, pm10 = (self._value(truth, k) for k in ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3"))
        if "out_of_range" in self.faults:
            pm1, pm25, pm10 = OUT_OF_RANGE_PM
        base = (60 * pm25, 18 * pm25, 4 * pm25, 0.5 * pm25, 0.2 * pm10, 0.05 * pm10)
        counts = tuple(max(0, int(round(b * self._rng.uniform(0.9, 1.1)))) for b in base)
        self.frames += 1
        return build_frame(pm1, pm25, pm10, counts)

    def current_frame(self) -> bytes:
        now = self._clock()
        if self._frame is None or ("stuck" not in self.faults and now - self._frame_at >= self.update_s):
            self._frame, self._frame_at = self._new_frame(), now
        frame = self._frame
        if "wrong_id" in self.faults:
            frame = bytes(FRAME_LEN)  # another device: no "BM" header
        return frame

    def write(self, data: bytes) -> None:
        if data:
            self._pointer = data[0] % FRAME_LEN

    def read(self, length: int) -> bytes:
        frame = self.current_frame()
        start, self._pointer = self._pointer, 0  # every read transfer starts at the frame's head
        return bytes(frame[(start + i) % FRAME_LEN] for i in range(length))
