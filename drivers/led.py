"""Status LED patterns on a gpiozero LED: ok / buffering / fault / identify / off."""

from __future__ import annotations

from typing import Any

from drivers.errors import SensorNotFound

# state -> (on_time_s, off_time_s); None = steady off
PATTERNS: dict[str, tuple[float, float] | None] = {
    "ok": (0.1, 2.9),         # short heartbeat every 3 s
    "buffering": (1.0, 1.0),  # slow blink: sampling fine, no uplink (readings kept on the SD card)
    "fault": (0.2, 0.2),      # fast blink: a sensor or the store is failing
    "identify": (0.05, 0.05), # very fast: the technician asked "which pole is this?"
    "off": None,
}


class StatusLED:
    def __init__(self, pin: int, *, active_high: bool = True, pin_factory: Any = None,
                 name: str = "status_led") -> None:
        self.pin, self.active_high, self.pin_factory, self.name = pin, active_high, pin_factory, name
        self.state = "off"
        self._led: Any = None

    def probe(self) -> None:
        from gpiozero import LED

        if self._led is None:
            try:
                self._led = LED(self.pin, active_high=self.active_high, initial_value=False,
                                pin_factory=self.pin_factory)
            except Exception as e:  # gpiozero: pin in use, bad pin, no pin factory
                raise SensorNotFound(f"cannot use GPIO{self.pin}: {type(e).__name__}: {e}",
                                     sensor=self.name, address=f"GPIO{self.pin}") from e

    def show(self, state: str) -> None:
        """Switch to a pattern; repeating the current state changes nothing."""
        if state not in PATTERNS:
            raise ValueError(f"LED state: expected one of {', '.join(PATTERNS)}, got {state!r}")
        self.probe()
        if state == self.state and state != "off":
            return
        self.state = state
        pattern = PATTERNS[state]
        if pattern is None:
            self._led.off()
        else:
            on, off = pattern
            self._led.blink(on_time=on, off_time=off, background=True)

    def close(self) -> None:
        led, self._led = self._led, None
        self.state = "off"
        if led is not None:
            led.close()
