"""A fake I2C bus holding emulated chips by address; it offers only smbus2.SMBus's methods.

Like the kernel, an address where nothing answers gives ``OSError(121)`` (EREMOTEIO).
`EmulatedChip` is the base of every register-level chip: it applies injected faults
(absent, nack, eio) to each transfer before the chip sees it.
"""

from __future__ import annotations

import ctypes
import errno
import threading
from typing import Any

I2C_M_RD = 0x0001
BUS_FAULTS = frozenset({"absent", "nack", "eio"})


def nack_error() -> OSError:
    return OSError(errno.EREMOTEIO, "Remote I/O error")


def eio_error() -> OSError:
    return OSError(errno.EIO, "Input/output error")


class EmulatedChip:
    """Base of emulated I2C chips: fault state plus ``write(data)`` / ``read(n)`` transfers."""

    kind = "chip"
    FAULTS: frozenset[str] = BUS_FAULTS

    def __init__(self) -> None:
        self.faults: set[str] = set()
        self.lock = threading.RLock()

    def inject(self, fault: str) -> None:
        if fault not in self.FAULTS:
            raise ValueError(f"fault {fault!r} does not apply to {self.kind} "
                             f"(one of {', '.join(sorted(self.FAULTS))})")
        self.faults.add(fault)

    def clear(self, fault: str | None = None) -> None:
        if fault is None:
            self.faults.clear()
        else:
            self.faults.discard(fault)

    def check(self, address_only: bool) -> None:
        """Raise what the bus would for this transfer under the injected faults."""
        if "absent" in self.faults:
            raise nack_error()
        if "eio" in self.faults:
            raise eio_error()
        if "nack" in self.faults and not address_only:
            raise nack_error()

    # a chip implements these two
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, length: int) -> bytes:
        raise NotImplementedError


class FakeSMBus:
    """Several emulated chips on one bus, reachable only through smbus2.SMBus's methods."""

    def __init__(self, devices: dict[int, EmulatedChip] | None = None) -> None:
        self.devices: dict[int, EmulatedChip] = dict(devices or {})
        self.transfers = 0  # count of transfers attempted (for tests and benchmarks)
        self.lock = threading.RLock()  # like drivers.i2c.LockedBus: adapters on this bus share it

    # ---------------------------------------------------------- wiring
    def attach(self, address: int, chip: EmulatedChip) -> None:
        self.devices[address] = chip

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def _chip(self, address: int) -> EmulatedChip:
        self.transfers += 1
        chip = self.devices.get(address)
        if chip is None:
            raise nack_error()
        return chip

    def _transfer(self, address: int, write: bytes | None, read_len: int | None) -> bytes:
        chip = self._chip(address)
        with chip.lock:
            address_only = (write is not None and len(write) == 0 and read_len is None) or (
                write is None and read_len == 1)
            chip.check(address_only)
            if write is not None:
                chip.write(write)
            return chip.read(read_len) if read_len is not None else b""

    # ---------------------------------------------------------- smbus2.SMBus's methods
    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._transfer(i2c_addr, bytes([register]), 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._transfer(i2c_addr, bytes([register, value & 0xFF]), None)

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        if not 0 < length <= 32:
            raise ValueError("Desired block length over 32 bytes")
        return list(self._transfer(i2c_addr, bytes([register]), length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int],
                             force: bool | None = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._transfer(i2c_addr, bytes([register, *data]), None)

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        return self._transfer(i2c_addr, None, 1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        self._transfer(i2c_addr, bytes([value & 0xFF]), None)

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self._transfer(i2c_addr, b"", None)

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Combined transfers on smbus2 ``i2c_msg`` objects (or anything with addr/flags/len/buf)."""
        for msg in i2c_msgs:
            if msg.flags & I2C_M_RD:
                data = self._transfer(msg.addr, None, msg.len)
                ctypes.memmove(msg.buf, data, msg.len)
            else:
                self._transfer(msg.addr, ctypes.string_at(msg.buf, msg.len), None)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeSMBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
