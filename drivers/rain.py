"""Tipping-bucket rain gauge: a reed switch to ground on a gpiozero Button (pull-up).

Debounce is ours (gpiozero's MockPin ignores bounce_time, and kernel debounce differs per
backend): a press within ``debounce_s`` of the last counted one is contact bounce. The
counter is cumulative and each `read()` takes the difference under a lock, so no tip is
lost between reads. ``rain_rate_mm_h`` is over the last ``rate_window_s``. Times come from
the injected clock: in accelerated emulation pass the rig's scenario clock, so debounce
and rates are in scenario seconds and fast tips stay countable.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.base import Measurement
from drivers.errors import SensorNotFound
from drivers.quality import Quality

QUANTITIES = ("rain_mm", "rain_rate_mm_h")
MAX_PLAUSIBLE_MM_H = 400.0  # above any recorded hourly rainfall: a chattering contact


class RainGauge:
    quantities = QUANTITIES

    def __init__(self, pin: int, *, mm_per_tip: float = 0.2794, debounce_s: float = 0.05,
                 pin_factory: Any = None, clock: Callable[[], float] = time.monotonic,
                 name: str = "rain", rate_window_s: float = 600.0, stuck_after_s: float = 60.0) -> None:
        self.pin, self.mm_per_tip, self.debounce_s = pin, mm_per_tip, debounce_s
        self.pin_factory, self.name = pin_factory, name
        self.rate_window_s, self.stuck_after_s = rate_window_s, stuck_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._button: Any = None
        self.total_tips = 0
        self.bounces = 0
        self._tips_at_read = 0
        self._last_tip: float | None = None
        self._recent: collections.deque[float] = collections.deque()
        self._opened_at = 0.0
        self._pressed_since: float | None = None

    def _on_press(self) -> None:
        now = self._clock()
        with self._lock:
            self._pressed_since = now
            if self._last_tip is not None and now - self._last_tip < self.debounce_s:
                self.bounces += 1
                return
            self._last_tip = now
            self.total_tips += 1
            self._recent.append(now)

    def _on_release(self) -> None:
        with self._lock:
            self._pressed_since = None

    def probe(self) -> None:
        self.close()
        from gpiozero import Button

        try:
            button = Button(self.pin, pull_up=True, bounce_time=None, pin_factory=self.pin_factory)
        except Exception as e:
            raise SensorNotFound(f"cannot use GPIO{self.pin}: {type(e).__name__}: {e}",
                                 sensor=self.name, address=f"GPIO{self.pin}") from e
        button.when_pressed = self._on_press
        button.when_released = self._on_release
        with self._lock:
            self._opened_at = self._clock()
            self._pressed_since = self._opened_at if button.is_pressed else None
        self._button = button

    def read(self) -> Measurement:
        """Rain since the last read (mm) and the rate over the last window (mm/h)."""
        if self._button is None:
            self.probe()
        now = self._clock()
        with self._lock:
            tips = self.total_tips - self._tips_at_read
            self._tips_at_read = self.total_tips
            while self._recent and now - self._recent[0] > self.rate_window_s:
                self._recent.popleft()
            in_window = len(self._recent)
            window = min(self.rate_window_s, max(now - self._opened_at, 60.0))
            stuck = self._pressed_since is not None and now - self._pressed_since >= self.stuck_after_s
        rain_mm = tips * self.mm_per_tip
        rate = in_window * self.mm_per_tip * 3600.0 / window
        flags = 0
        if rate > MAX_PLAUSIBLE_MM_H:
            flags |= Quality.OUT_OF_RANGE
        if stuck:
            flags |= Quality.STUCK  # reed held closed: no tips can be counted
        return Measurement({"rain_mm": rain_mm, "rain_rate_mm_h": rate},
                           dict.fromkeys(QUANTITIES, int(flags)), sensor=self.name)

    def close(self) -> None:
        button, self._button = self._button, None
        if button is not None:
            button.close()
