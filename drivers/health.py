"""Node health: CPU temperature, disk use, load, uptime and the Pi's throttling flags.

Every path is read under ``root`` (default "/") so tests and the technician's training
mode can plant files in a temp dir. Each value is optional: a missing file or command
gives None with the FAULT flag, never an exception. (gpiozero's CPUTemperature/LoadAverage/
DiskUsage read the same files, but need a pin factory even off a Pi and take no root.)

``throttled`` is the firmware's get_throttled word: bit 0 under-voltage now, 1 ARM
frequency capped, 2 throttled, 3 soft temperature limit; bits 16-19 the same "has occurred
since boot". It comes from /sys/devices/platform/soc/soc:firmware/get_throttled, else from
``vcgencmd get_throttled`` (only when root is "/").
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from drivers.base import Measurement

QUANTITIES = ("cpu_temp_c", "disk_used_pct", "load_1m", "uptime_s", "throttled")
THERMAL = "sys/class/thermal/thermal_zone0/temp"
LOADAVG = "proc/loadavg"
UPTIME = "proc/uptime"
THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
UNDER_VOLTAGE_NOW = 1 << 0
UNDER_VOLTAGE_OCCURRED = 1 << 16
THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred", 17: "ARM frequency capping has occurred",
    18: "throttling has occurred", 19: "soft temperature limit has occurred",
}


def describe_throttled(word: int) -> list[str]:
    return [text for bit, text in THROTTLE_BITS.items() if word & (1 << bit)]


def parse_throttled(text: str) -> int:
    """'50005', '0x50005' or 'throttled=0x50005' -> 0x50005."""
    value = text.strip().split("=")[-1].strip()
    return int(value, 16)


class NodeHealth:
    quantities = QUANTITIES

    def __init__(self, *, root: str | os.PathLike[str] = "/", name: str = "health",
                 disk_path: str | os.PathLike[str] | None = None, vcgencmd: str | None = "vcgencmd",
                 timeout_s: float = 2.0) -> None:
        self.root = Path(root)
        self.name = name
        self.disk_path = Path(disk_path) if disk_path is not None else self.root
        self.vcgencmd, self.timeout_s = vcgencmd, timeout_s

    def _text(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text(encoding="ascii", errors="replace")
        except OSError:
            return None

    def cpu_temp_c(self) -> float | None:
        text = self._text(THERMAL)
        try:
            return int(text.strip()) / 1000.0 if text else None
        except ValueError:
            return None

    def _first_number(self, rel: str) -> float | None:
        """The first field of a /proc file such as loadavg or uptime (None: missing or garbled)."""
        text = self._text(rel)
        try:
            return float(text.split()[0]) if text else None
        except (ValueError, IndexError):
            return None

    def load_1m(self) -> float | None:
        return self._first_number(LOADAVG)

    def uptime_s(self) -> float | None:
        return self._first_number(UPTIME)

    def disk_used_pct(self) -> float | None:
        try:
            st = os.statvfs(self.disk_path)
        except OSError:
            return None
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        return 100.0 * used / (used + avail) if used + avail else None

    def throttled(self) -> int | None:
        text = self._text(THROTTLED)
        if text is not None:
            try:
                return parse_throttled(text)
            except ValueError:
                return None
        if self.vcgencmd and self.root == Path("/") and shutil.which(self.vcgencmd):
            try:
                out = subprocess.run([self.vcgencmd, "get_throttled"], capture_output=True, text=True,
                                     timeout=self.timeout_s, check=True).stdout
                return parse_throttled(out)
            except (OSError, subprocess.SubprocessError, ValueError):
                return None
        return None

    def probe(self) -> None:
        """Nothing to claim: every value is optional."""

    def read(self) -> Measurement:
        t = self.throttled()
        values: dict[str, float | None] = {
            "cpu_temp_c": self.cpu_temp_c(),
            "disk_used_pct": self.disk_used_pct(),
            "load_1m": self.load_1m(),
            "uptime_s": self.uptime_s(),
            "throttled": float(t) if t is not None else None,
        }
        return Measurement(values, sensor=self.name)

    def close(self) -> None:
        pass
