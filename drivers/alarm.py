"""A warning light or siren on a GPIO pin (through a relay or a transistor): on or off.

A gpiozero `DigitalOutputDevice` built with an explicit ``pin_factory``; the constructor stores,
`probe()` claims the pin (initially off), `set()` switches it. Whether to switch is the node's
business (`node.alarms`): this driver knows nothing of water.
"""

from __future__ import annotations

from typing import Any

from drivers.errors import SensorNotFound


class AlarmOutput:
    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None,
                 name: str = "alarm") -> None:
        self.pin, self.active_high, self.pin_factory, self.name = pin, active_high, pin_factory, name
        self._device: Any = None

    def probe(self) -> None:
        """Claim the pin, output off (raises `SensorNotFound` naming the pin)."""
        if self._device is not None:
            return
        from gpiozero import DigitalOutputDevice

        try:
            self._device = DigitalOutputDevice(self.pin, active_high=self.active_high,
                                               initial_value=False, pin_factory=self.pin_factory)
        except Exception as e:  # gpiozero: pin in use, bad pin, no pin factory
            raise SensorNotFound(f"cannot use GPIO{self.pin}: {type(e).__name__}: {e}",
                                 sensor=self.name, address=f"GPIO{self.pin}") from e

    @property
    def is_on(self) -> bool:
        return bool(self._device is not None and self._device.value)

    def set(self, on: bool) -> None:
        self.probe()
        if on:
            self._device.on()
        else:
            self._device.off()

    def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.close()
