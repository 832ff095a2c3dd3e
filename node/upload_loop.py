"""The upload thread's schedule, on the monotonic clock.

`schedule` (dropped) runs jobs on naive local ``datetime.now()``: under a zone with DST the autumn
change gave one round in 12 minutes instead of 24, and a backward wall-clock step stalled uploads by
its size. Here every time is ``timer()`` (monotonic): a round starts when the interval since the
last one has passed and the uploader's backoff allows it; a round that used its whole interval with
readings still waiting is followed at once by the next (a backlog drains at full duty, not half); a
storm alert goes out at once, bypassing the backoff once, and stays pending until its batch is
acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("streetnode.agent")

TICK_S = 0.5  # the loop looks at stop/alert/settings at least this often
MIN_ROUND_S = 5.0  # a round may always run this long, even with a 1 s interval


class UploadLoop:
    """``UploadLoop(make_uploader, interval=..., on_round=...)``; `run` is the thread's target."""

    def __init__(self, make_uploader: Callable[[], Any], *, interval: Callable[[], float],
                 on_round: Callable[[Any, bool, Exception | None], None],
                 timer: Callable[[], float] = time.monotonic, min_round_s: float = MIN_ROUND_S) -> None:
        self._make = make_uploader
        self._interval = interval
        self._on_round = on_round
        self._timer = timer
        self._min_round_s = min_round_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._alert = threading.Event()
        self._alert_tried = False  # the pending alert already had its one round past the backoff
        self._settings: Any = None
        self._rebuild = False
        self._prompt = False
        self._lock = threading.Lock()
        self._requested = 0  # settings generations asked for by `configure`
        self.generation = 0  # the settings generation the uploader runs with
        self.round_generation = 0  # ... and the one the last round started with
        self.uploader: Any = None
        self.next_due = 0.0

    # ------------------------------------------------------------ from other threads
    def alert(self) -> None:
        """Storm mode began: send the newest readings marked as an alert, now."""
        self._alert_tried = False
        self._alert.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def configure(self, settings: Any, *, rebuild: bool = False, prompt: bool = False) -> int:
        """New ``[upload]`` settings, applied before the next round; ``rebuild``: make a new uploader
        (new ``[central]`` settings); ``prompt``: run a round with them at once (a new configuration
        proves itself and is reported sooner). Returns the generation a round run with them carries."""
        with self._lock:
            self._settings = settings
            self._rebuild = self._rebuild or rebuild
            self._prompt = self._prompt or prompt
            self._requested += 1
            generation = self._requested
        self._wake.set()
        return generation

    @property
    def alert_pending(self) -> bool:
        return self._alert.is_set()

    # ------------------------------------------------------------ the thread
    def run(self) -> None:
        self.uploader = self._make()
        self.next_due = self._timer()
        while not self._stop.is_set():
            if self._settings is not None:
                self._take_settings()
            self._maybe_round()
            self._wait()

    def _take_settings(self) -> None:
        with self._lock:
            settings, self._settings = self._settings, None
            rebuild, self._rebuild = self._rebuild, False
            prompt, self._prompt = self._prompt, False
            generation = self._requested
        if prompt:
            self.next_due = self._timer()
        if rebuild:  # between rounds: the old uploader holds no claim now
            try:
                fresh = self._make()
            except Exception as e:  # the generation stays old: a health check waiting for it fails
                log.error("new upload settings not applied, uploading as before: %s", e)
                return
            old, self.uploader = self.uploader, fresh
            try:
                old.close()
            except Exception as e:
                log.debug("closing the previous uploader: %s", e)
            log.info("uploader rebuilt with new central settings")
        else:
            self.uploader.configure(settings)
            log.info("upload settings applied: %s", settings)
        self.generation = generation

    def _maybe_round(self) -> None:
        now = self._timer()
        up = self.uploader
        if self._alert.is_set() and (up.ready(now) or not self._alert_tried):
            self._alert_tried = True
            self._round(alert=True)
        elif now >= self.next_due and up.ready(now):
            self._round(alert=False)

    def _round(self, *, alert: bool) -> None:
        self.round_generation = self.generation
        started = self._timer()
        interval = float(self._interval())
        try:
            res = self.uploader.run_round(started + max(interval, self._min_round_s), alert=alert)
        except Exception as e:  # never let one round kill the thread; the uploader backed off
            self.next_due = started + interval
            self._on_round(None, alert, e)
            return
        if res.deadline_reached:  # the round used its whole time and readings wait: go on at once
            self.next_due = self._timer()
        else:
            self.next_due = started + interval
        if alert and (res.alert_sent or (res.error is None and res.live_readings == 0)):
            self._alert.clear()
        self._on_round(res, alert, None)

    def _wait(self) -> None:
        now = self._timer()
        up = self.uploader
        due = max(self.next_due, up.next_attempt_at)
        if self._alert.is_set():
            due = now if not self._alert_tried else min(due, up.next_attempt_at)
        wait = min(TICK_S, max(0.0, due - now))
        if wait > 0:
            self._wake.wait(wait)
        self._wake.clear()
