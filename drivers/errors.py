"""The drivers' error hierarchy: every error names the sensor, its address and the cause.

Leaf classes also inherit the matching builtin (like gpiozero's exceptions), so a caller
can catch either ``DriverError`` or e.g. ``OSError``/``TimeoutError``. Re-probing with
backoff is the caller's policy; a driver can always be probed/read again after an error.
"""

from __future__ import annotations

import errno as _errno

EX_UNAVAILABLE = 69  # sysexits: a required device is not reachable
EX_NOPERM = 77       # sysexits: a device has the wrong permissions


def _fmt_address(address: int | str | None) -> str:
    if address is None:
        return ""
    return f" at 0x{address:02x}" if isinstance(address, int) else f" at {address}"


class DriverError(Exception):
    """Root of every error a driver raises on purpose."""

    exit_code = EX_UNAVAILABLE

    def __init__(self, cause: str, *, sensor: str | None = None,
                 address: int | str | None = None, remedy: str | None = None) -> None:
        self.sensor = sensor
        self.address = address
        self.cause = cause
        self.remedy = remedy
        super().__init__(cause)

    def __str__(self) -> str:
        who = f"{self.sensor or 'sensor'}{_fmt_address(self.address)}: "
        text = who + self.cause
        return f"{text} ({self.remedy})" if self.remedy else text


class SensorNotFound(DriverError):
    """Nothing answers at the sensor's address (or no echo/pin at all)."""


class WrongChip(DriverError):
    """Something answers, but it is not the expected part (chip ID, frame header)."""


class BusError(DriverError, OSError):
    """A bus transfer failed: NACK (errno 121), EIO (5), corrupted data. ``.errno`` is set."""

    def __init__(self, cause: str, *, errno: int = _errno.EIO, sensor: str | None = None,
                 address: int | str | None = None, remedy: str | None = None) -> None:
        DriverError.__init__(self, cause, sensor=sensor, address=address, remedy=remedy)
        self.errno = errno
        self.strerror = cause

    def __str__(self) -> str:
        return DriverError.__str__(self)


class SensorTimeout(DriverError, TimeoutError):
    """The sensor did not finish in time (a wait passed its deadline)."""


class BusPermissionError(DriverError, PermissionError):
    """/dev/i2c-N exists but this user may not open it (EACCES)."""

    exit_code = EX_NOPERM


class BusMissing(DriverError, FileNotFoundError):
    """/dev/i2c-N does not exist (I2C not enabled, wrong bus number)."""


NACK = _errno.EREMOTEIO  # 121: the kernel's answer when a chip does not acknowledge
EIO = _errno.EIO         # 5


def bus_error(exc: OSError, *, sensor: str | None, address: int | None, doing: str) -> BusError:
    """Wrap an OSError from the bus as a `BusError` naming what was being done."""
    code = exc.errno if exc.errno is not None else EIO
    kind = {NACK: "NACK (no acknowledge)", EIO: "I/O error (EIO)"}.get(code, exc.strerror or str(exc))
    remedy = "check the wiring, the pull-ups and the power"
    err = BusError(f"{doing}: {kind} [errno {code}]", errno=code, sensor=sensor, address=address,
                   remedy=remedy)
    err.__cause__ = exc
    return err
