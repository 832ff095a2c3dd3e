"""The I2C boundary: the only module importing smbus2.

* `open_bus(n)` opens ``/dev/i2c-n`` once per process and returns a `LockedBus` (smbus2's
  methods, each under one lock per bus), raising `BusMissing`/`BusPermissionError` with a remedy.
* `BusDeviceAdapter(bus)` turns anything with smbus2.SMBus's methods (a real bus, the
  emulator's `FakeSMBus`, a test's own fake) into the object ``adafruit_bus_device`` expects
  (``try_lock/unlock/writeto/readfrom_into/writeto_then_readfrom``), built on ``i2c_rdwr``.
* `load_adafruit(module)` imports an Adafruit driver without Blinka's board detection: the
  Adafruit drivers import ``busio``/``digitalio`` only for type names, so unless the real
  modules are already imported we register two tiny stand-ins first; likewise
  ``circuitpython_typing`` (``adafruit_bus_device`` imports it "only for type annotations"; the
  real one brings ``typing_extensions``: ~0.4 MiB of the daemon's RSS, issue #22).
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import threading
import types
from typing import Any

from drivers.errors import BusMissing, BusPermissionError, SensorTimeout

I2C_M_RD = 0x0001
LOCK_TIMEOUT_S = 2.0

_buses: dict[int, LockedBus] = {}
_buses_lock = threading.Lock()


class LockedBus:
    """One shared smbus2.SMBus per bus number; every call holds ``lock`` (re-entrant)."""

    def __init__(self, smbus: Any, number: int) -> None:
        self._smbus = smbus
        self.number = number
        self.lock = threading.RLock()

    def _call(self, name: str, *args: Any) -> Any:
        if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
            raise SensorTimeout(f"bus {self.number} busy for more than {LOCK_TIMEOUT_S:g} s",
                                sensor=f"i2c-{self.number}")
        try:
            return getattr(self._smbus, name)(*args)
        finally:
            self.lock.release()

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        return self._call("read_byte_data", i2c_addr, register)

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self._call("write_byte_data", i2c_addr, register, value)

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        return self._call("read_i2c_block_data", i2c_addr, register, length)

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int]) -> None:
        self._call("write_i2c_block_data", i2c_addr, register, data)

    def i2c_rdwr(self, *msgs: Any) -> None:
        self._call("i2c_rdwr", *msgs)

    def close(self) -> None:
        with _buses_lock:
            if _buses.get(self.number) is self:
                del _buses[self.number]
        self._smbus.close()


def open_bus(n: int, *, dev_dir: str = "/dev") -> LockedBus:
    """The shared, locked bus ``n``; raises BusMissing / BusPermissionError with a remedy."""
    with _buses_lock:
        bus = _buses.get(n)
        if bus is not None:
            return bus
        path = os.path.join(dev_dir, f"i2c-{n}")
        import smbus2

        try:
            smbus = smbus2.SMBus(path)
        except FileNotFoundError:
            raise BusMissing(
                f"{path} does not exist", sensor=f"i2c-{n}",
                remedy="enable I2C (sudo raspi-config nonint do_i2c 0, or dtparam=i2c_arm=on in "
                "/boot/firmware/config.txt) and reboot, or fix the bus number in the config",
            ) from None
        except PermissionError:
            raise BusPermissionError(
                f"no permission to open {path}", sensor=f"i2c-{n}",
                remedy="add the service user to group i2c: sudo usermod -aG i2c streetnode",
            ) from None
        except OSError as e:
            raise BusMissing(f"{path} is not an I2C adapter ({e.strerror})", sensor=f"i2c-{n}",
                             remedy="check the bus number: ls /dev/i2c-*") from None
        bus = _buses[n] = LockedBus(smbus, n)
        return bus


def read_msg(address: int, length: int) -> Any:
    """An smbus2 read message (what ``i2c_rdwr`` takes)."""
    import smbus2

    return smbus2.i2c_msg.read(address, length)


def answers(bus: Any, address: int) -> bool:
    """True when a device ACKs a one-byte read at ``address`` (the chip is there, whatever it is)."""
    try:
        bus.i2c_rdwr(read_msg(address, 1))
        return True
    except OSError:
        return False


def write_msg(address: int, data: bytes) -> Any:
    import smbus2

    return smbus2.i2c_msg.write(address, data)


class BusDeviceAdapter:
    """The busio.I2C-like object adafruit_bus_device drives, over any smbus2-like bus."""

    def __init__(self, bus: Any, *, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.bus = bus
        self._lock = getattr(bus, "lock", None) or threading.RLock()
        self._lock_timeout_s = lock_timeout_s

    def try_lock(self) -> bool:
        # adafruit_bus_device spins on try_lock() without a deadline: block with one instead.
        if self._lock.acquire(timeout=self._lock_timeout_s):
            return True
        raise SensorTimeout(f"I2C bus busy for more than {self._lock_timeout_s:g} s", sensor="i2c")

    def unlock(self) -> None:
        self._lock.release()

    def writeto(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        data = bytes(buffer[start:end if end is not None else len(buffer)])
        self.bus.i2c_rdwr(write_msg(address, data))

    def readfrom_into(self, address: int, buffer: Any, *, start: int = 0, end: int | None = None) -> None:
        end = len(buffer) if end is None else end
        msg = read_msg(address, end - start)
        self.bus.i2c_rdwr(msg)
        buffer[start:end] = bytes(msg)

    def writeto_then_readfrom(self, address: int, buffer_out: Any, buffer_in: Any, *,
                              out_start: int = 0, out_end: int | None = None,
                              in_start: int = 0, in_end: int | None = None) -> None:
        out_end = len(buffer_out) if out_end is None else out_end
        in_end = len(buffer_in) if in_end is None else in_end
        wr = write_msg(address, bytes(buffer_out[out_start:out_end]))
        rd = read_msg(address, in_end - in_start)
        self.bus.i2c_rdwr(wr, rd)
        buffer_in[in_start:in_end] = bytes(rd)

    def scan(self) -> list[int]:
        from drivers.scan import scan

        return [f.address for f in scan(self.bus)]

    def deinit(self) -> None:
        pass


def _standin(name: str, **names: Any) -> None:
    """Put a module ``name`` holding ``names`` in sys.modules, unless the real one is loaded."""
    if name in sys.modules:
        return
    module = types.ModuleType(name, "streetnode stand-in: type names only (no Blinka)")
    for attr, value in names.items():
        setattr(module, attr, value)
    module.__streetnode_standin__ = True  # type: ignore[attr-defined]
    sys.modules[name] = module


def _install_blinka_standins() -> None:
    _standin("busio", I2C=type("I2C", (), {}), SPI=type("SPI", (), {}))
    _standin("digitalio", Direction=type("Direction", (), {"INPUT": "input", "OUTPUT": "output"}),
             DigitalInOut=type("DigitalInOut", (), {}),
             DriveMode=type("DriveMode", (), {"PUSH_PULL": 0, "OPEN_DRAIN": 1}),
             Pull=type("Pull", (), {"UP": 1, "DOWN": 2}))
    _standin("circuitpython_typing", ReadableBuffer=type("ReadableBuffer", (), {}),
             WriteableBuffer=type("WriteableBuffer", (), {}))


def load_adafruit(module: str) -> types.ModuleType:
    """Import an Adafruit CircuitPython driver module without Blinka's platform detection."""
    _install_blinka_standins()
    return importlib.import_module(module)


def is_absent(exc: OSError) -> bool:
    """True for the kernel's answers meaning 'nothing acknowledged this address'."""
    return exc.errno in (errno.EREMOTEIO, errno.ENXIO)
