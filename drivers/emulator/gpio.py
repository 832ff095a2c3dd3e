"""GPIO emulation on gpiozero's MockFactory: echo timing from a true distance, reed pulses.

* `BoundedMockPin` keeps only the last `STATE_HISTORY` state changes (gpiozero's MockPin
  keeps all of them: an emulated node pinging 12 times a second would grow without bound).
* `SonarTriggerPin` answers each trigger with an echo pulse on its `EchoPin` whose length
  is ``2 * distance / speed_of_sound`` — the speed in the emulated air (``speed_m_s()``, from the
  scenario's temperature and humidity), not the 343.26 m/s gpiozero assumes, so an uncorrected
  ranger is off exactly as a real one is; the pulse's edge timestamps are exact (no thread, no
  sleep), so gpiozero's DistanceSensor measures the echo time, not the scheduler's jitter.
  ``distance_m()`` returning None means no echo at all (a dead echo line).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin, PinState

SPEED_OF_SOUND_M_S = 343.26  # what gpiozero's DistanceSensor assumes
STATE_HISTORY = 256


class BoundedMockPin(MockPin):
    def clear_states(self) -> None:
        self._last_change = time.monotonic()
        self.states = collections.deque([PinState(0.0, self._state)], maxlen=STATE_HISTORY)


class EchoPin(BoundedMockPin):
    def _edge(self, value: bool, t: float) -> None:
        if self._state == value:
            return
        self._state = value
        self.states.append(PinState(t - self._last_change, value))
        self._last_change = t
        wanted = "rising" if value else "falling"
        if self._edges in ("both", wanted) and self._when_changed is not None:
            self._call_when_changed()

    def pulse(self, duration_s: float) -> None:
        """Drive high then low, the edges exactly ``duration_s`` apart."""
        t0 = time.monotonic()
        self._edge(True, t0)
        self._edge(False, t0 + duration_s)


class SonarTriggerPin(BoundedMockPin):
    def __init__(self, factory: Any, info: Any, echo_pin: EchoPin | None = None,
                 distance_m: Callable[[], float | None] | None = None,
                 speed_m_s: Callable[[], float] | None = None) -> None:
        super().__init__(factory, info)
        self.echo_pin = echo_pin
        self.distance_m = distance_m or (lambda: 1.0)
        self.speed_m_s = speed_m_s or (lambda: SPEED_OF_SOUND_M_S)
        self.pings = 0

    def _set_state(self, value: Any) -> None:
        super()._set_state(value)
        if value and self.echo_pin is not None:
            self.pings += 1
            d = self.distance_m()
            if d is not None:
                self.echo_pin.pulse(2.0 * d / self.speed_m_s())


class LampPin(BoundedMockPin):
    """An emulated warning light or siren: logs and records each switch of its output."""

    def __init__(self, factory: Any, info: Any, label: str = "lamp",
                 on_switch: Callable[[str, bool], None] | None = None) -> None:
        super().__init__(factory, info)
        self.label = label
        self.on_switch = on_switch
        self.switches: collections.deque[tuple[float, bool]] = collections.deque(maxlen=STATE_HISTORY)

    def _set_state(self, value: Any) -> None:
        before = bool(self._state)
        super()._set_state(value)
        lit = bool(self._state)
        if self.function == "output" and lit != before:
            self.switches.append((time.monotonic(), lit))
            if self.on_switch is not None:
                self.on_switch(self.label, lit)


def mock_factory() -> MockFactory:
    """A MockFactory whose pins keep a bounded history."""
    return MockFactory(pin_class=BoundedMockPin)


def attach_sonar(factory: MockFactory, trigger_pin: int, echo_pin: int,
                 distance_m: Callable[[], float | None],
                 speed_m_s: Callable[[], float] | None = None) -> SonarTriggerPin:
    """Wire an emulated ultrasonic ranger; do it before the DistanceSensor claims the pins."""
    echo = factory.pin(echo_pin, pin_class=EchoPin)
    trigger = factory.pin(trigger_pin, pin_class=SonarTriggerPin, echo_pin=echo, distance_m=distance_m)
    if not isinstance(echo, EchoPin) or not isinstance(trigger, SonarTriggerPin):
        raise ValueError(f"GPIO{trigger_pin}/GPIO{echo_pin} were claimed before the emulated ranger "
                         "was attached: call attach_ranger() before FloodRanger.probe()")
    trigger.distance_m = distance_m
    if speed_m_s is not None:
        trigger.speed_m_s = speed_m_s
    return trigger


def attach_lamp(factory: MockFactory, pin: int, label: str,
                on_switch: Callable[[str, bool], None] | None = None) -> LampPin:
    """Wire an emulated warning light on ``pin``; do it before the output device claims it."""
    lamp = factory.pin(pin, pin_class=LampPin, label=label, on_switch=on_switch)
    if not isinstance(lamp, LampPin):
        raise ValueError(f"GPIO{pin} was claimed before the emulated lamp was attached")
    return lamp


def tip(pin: MockPin, bounces: int = 2) -> None:
    """One bucket tip: the reed closes (to ground, pull-up) with contact bounce, then opens."""
    pin.drive_low()
    for _ in range(bounces):
        pin.drive_high()
        pin.drive_low()
    pin.drive_high()
