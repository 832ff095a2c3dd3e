"""``streetnode scan``: probe 0x03-0x77 like ``i2cdetect -r`` and name the known parts."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from drivers.i2c import read_msg

KNOWN_PARTS: dict[int, tuple[str, ...]] = {
    0x12: ("PMSA003I",),
    0x23: ("BH1750",),
    0x5C: ("BH1750",),
    0x44: ("SHT3x",),
    0x45: ("SHT3x",),
    0x48: ("ADS1115",),
    0x49: ("ADS1115",),
    0x4A: ("ADS1115",),
    0x4B: ("ADS1115",),
    0x62: ("SCD4x",),
    0x76: ("BME280", "BMP280"),
    0x77: ("BME280", "BMP280"),
}
BMX280_IDS = {0x60: "BME280", 0x58: "BMP280", 0x61: "BME680"}
FIRST, LAST = 0x03, 0x77


@dataclass(frozen=True)
class Found:
    address: int
    part_names: tuple[str, ...]
    status: str = "ok"  # "ok"; "busy" (claimed by a kernel driver, UU); "error" (answered with EIO)


def _identify(bus: Any, address: int) -> tuple[str, ...]:
    names = KNOWN_PARTS.get(address, ())
    if address in (0x76, 0x77):
        try:
            chip_id = bus.read_byte_data(address, 0xD0)
        except OSError:
            return names
        return (BMX280_IDS.get(chip_id, f"unknown chip ID 0x{chip_id:02x}"),)
    return names


def scan(bus: Any, first: int = FIRST, last: int = LAST) -> list[Found]:
    """Addresses that answer a one-byte read (never a write: safe for EEPROMs)."""
    found: list[Found] = []
    for address in range(first, last + 1):
        try:
            bus.i2c_rdwr(read_msg(address, 1))
        except OSError as e:
            if e.errno in (errno.EREMOTEIO, errno.ENXIO, errno.ETIMEDOUT):
                continue
            status = "busy" if e.errno == errno.EBUSY else "error"
            found.append(Found(address, KNOWN_PARTS.get(address, ()), status))
            continue
        found.append(Found(address, _identify(bus, address)))
    return found


def format_grid(found: list[Found]) -> str:
    """The ``i2cdetect`` grid, then one line per answering address with its part names."""
    marks = {f.address: {"ok": f"{f.address:02x}", "busy": "UU", "error": "EE"}[f.status] for f in found}
    lines = ["     " + "  ".join(f"{c:x}" for c in range(16))]
    for row in range(0, 0x80, 0x10):
        cells = []
        for col in range(16):
            a = row + col
            cells.append("  " if a < FIRST or a > LAST else marks.get(a, "--"))
        lines.append((f"{row:02x}: " + " ".join(cells)).rstrip())
    for f in found:
        what = " or ".join(f.part_names) if f.part_names else "unknown part"
        note = {"ok": "", "busy": " (claimed by a kernel driver)", "error": " (answered with an I/O error)"}
        lines.append(f"0x{f.address:02x}  {what}{note[f.status]}")
    if not found:
        lines.append("no device answered on this bus")
    return "\n".join(lines)
