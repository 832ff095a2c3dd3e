"""Time without an RTC: stamps, sync detection, step detection, corrections.

A Pi boots with a stale wall clock (fake-hwclock) and steps it when NTP
syncs. Every sampling cycle is stamped with wall time, CLOCK_BOOTTIME (never
steps) and the boot id, plus whether the wall clock was synchronized. While
it is not, `Clock` remembers the wall-minus-boot offset its stamps were taken
with; when the clock becomes synchronized (or the central's time is learned
during upload) the difference between the new and the remembered offset is
the error of those readings, handed out as a `Correction` for
``buffer.correct_clock(boot_id, offset_ms)``. Once the central's time is known, unsynced stamps
follow it (``wall = boot + the central's base``) and are flagged CLOCK_CORRECTED at once.

A clock that claims to be synchronized but is off from the central by more than ``suspect_s``
(default 2 min) is *suspect*: for that episode it is treated as unsynced (stamps follow the
central's time), and the readings of this boot stamped on the wrong base are moved to the true one
(a `Correction` with ``wrong_base_ms``, for ``buffer.rebase_clock``). The episode ends when the
clock agrees with the central again (within half the bound).

Sync detection (`is_synchronized`): systemd-timesyncd's flag file, else the
kernel's own NTP state via ``adjtimex(2)`` with ``modes = 0`` (read-only;
``STA_UNSYNC`` / ``TIME_ERROR``), which works with chrony or ntpd too. None
means unknown; then a step of the wall clock (the wall-minus-boot offset
jumping by more than ``step_ms``) is taken as the clock being set.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.model import Stamp

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
SYNC_FLAG_PATHS = ("/run/systemd/timesync/synchronized",)
LKG_FILE = "clock.json"
SUSPECT_S = 120.0  # [clock] suspect_s: a synced clock further than this from the central is suspect

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_fallback_boot_id: str | None = None


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """The kernel's boot id; a per-process random stand-in when unreadable."""
    global _fallback_boot_id
    try:
        text = Path(path).read_text().strip()
        if text:
            return text
    except OSError:
        pass
    if _fallback_boot_id is None:
        import uuid  # only without /proc's boot id: uuid and platform cost the daemon ~0.2 MiB

        _fallback_boot_id = "nobootid-" + uuid.uuid4().hex
    return _fallback_boot_id


def boot_ms() -> int:
    """CLOCK_BOOTTIME in ms: monotonic, counts suspend, restarts at 0 each boot."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000)


@functools.cache
def _adjtimex() -> tuple[Any, Any] | None:
    """(adjtimex function, struct timex type), loaded once; ctypes is imported only here."""
    import ctypes

    class Timex(ctypes.Structure):
        # struct timex of the plain (not _TIME_BITS=64) adjtimex symbol: longs and ints
        _fields_ = [
            ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
            ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
            ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
            ("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long), ("tick", ctypes.c_long),
            ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
            ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
            ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
            ("_pad", ctypes.c_int * 11),
        ]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "adjtimex", None) or libc.ntp_adjtime
    except (OSError, AttributeError):
        return None
    return fn, Timex


def kernel_synchronized() -> bool | None:
    """The kernel NTP state via adjtimex(modes=0); None if the call is unavailable or refused.

    With timesyncd's flag file present this is never called (and ctypes never loaded).
    """
    import ctypes

    loaded = _adjtimex()
    if loaded is None:
        return None
    fn, timex = loaded
    tx = timex()
    state = fn(ctypes.byref(tx))
    if state < 0:  # EPERM under ProtectClock= / a seccomp filter
        return None
    return state != _TIME_ERROR and not tx.status & _STA_UNSYNC


def is_synchronized(*, paths: Sequence[str] = SYNC_FLAG_PATHS, kernel: bool = True) -> bool | None:
    """True if the wall clock is NTP-synchronized, False if not, None if unknown."""
    for p in paths:
        if os.path.exists(p):
            return True
    return kernel_synchronized() if kernel else None


@dataclass(frozen=True, slots=True)
class Correction:
    """Readings of ``boot_id`` stamped while unsynced are ``offset_ms`` off."""

    boot_id: str
    offset_ms: int
    source: str  # "ntp", "step", "central" or "suspect"
    # the true wall - boot of this boot: lets the buffer put every unsynced reading of the boot on
    # true time whatever base it was stamped with (another process of the same boot, a clock set
    # by hand); offset_ms is the shift for the stamps of this process
    true_base_ms: int | None = None
    # "suspect": the wrong wall - boot a clock claiming sync stamped with; readings of the boot
    # closer to it than to the true base (within ``abs(offset_ms) // 2``) move to the true base
    wrong_base_ms: int | None = None


class Clock:
    """Stamps cycles and turns clock sync events into `Correction`s.

    While unsynchronized, stamps follow the boot clock from the first
    unsynced stamp (``wall = boot + base``), so a step of the wall clock
    before sync is detected cannot split them: one offset corrects them all.
    Once the central's time is learned (`learn_central_base`), the base is the
    central's and stamps are flagged corrected; one `Correction` (with the true
    base) moves the unsynced readings stamped before. Thread-safe: the sampling
    thread calls `stamp`/`poll`, the uploader thread `learn_central_base`.
    Corrections queue until `take_corrections`.
    """

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        boot: Callable[[], int] = boot_ms,
        sync: Callable[[], bool | None] = is_synchronized,
        boot_id: str | None = None,
        step_ms: int = 2000,
        sync_poll_s: float = 0.5,
        suspect_s: float = SUSPECT_S,
    ) -> None:
        self._wall, self._boot, self._sync = wall, boot, sync
        self._boot_id = boot_id
        self._step_ms, self._sync_poll_ms = step_ms, int(sync_poll_s * 1000)
        self.suspect_ms = int(suspect_s * 1000)
        self._lock = threading.Lock()
        self._synced: bool | None = None
        self._set_by_step = False
        self._last_sync_check: int | None = None
        self._last_offset: int | None = None
        self._base: int | None = None  # wall - boot of unsynced stamps (None: not stamped yet)
        self._central = False  # _base is the central's: stamps on it are corrected
        # readings of this boot may wait on a wrong base (stamped unsynced on the raw clock, here or
        # by an earlier process of the same boot): the next learned base corrects them
        self._raw = True
        self._suspect = False
        self._pending: list[Correction] = []
        self.last_correction: Correction | None = None
        self.offset_ms: int | None = None  # the central's clock minus ours, as last learned
        self.suspect_episodes = 0

    @property
    def boot_id(self) -> str:
        if self._boot_id is None:
            self._boot_id = read_boot_id()
        return self._boot_id

    def wall(self) -> float:
        """The wall clock this Clock stamps with (s since the epoch): the uploader signs with it."""
        return self._wall()

    def boot(self) -> int:
        """The boot clock (ms) stamps are taken with: the uploader measures the central's base on it."""
        return int(self._boot())

    @property
    def synced(self) -> bool | None:
        """The last sync state the clock claimed (None: unknown)."""
        return self._synced

    @property
    def state(self) -> str:
        """``synced``, ``unsynced``, or ``suspect`` (claims sync, but is off from the central)."""
        if self._suspect:
            return "suspect"
        return "synced" if self._synced else "unsynced"

    def _check(self) -> tuple[int, int, bool]:
        """(wall ms, boot ms, trusted synced); queue a correction on the unsynced -> synced edge."""
        wall, boot = int(self._wall() * 1000), int(self._boot())
        offset = wall - boot
        stepped = self._last_offset is not None and abs(offset - self._last_offset) > self._step_ms
        self._last_offset = offset
        due = self._last_sync_check is None or boot - self._last_sync_check >= self._sync_poll_ms
        if due or stepped:
            self._last_sync_check = boot
            s = self._sync()
            if s is None and (stepped or self._set_by_step):
                self._set_by_step = True  # unknown sync state: a step means the clock was set
                s = True
            self._synced = s
        if self._synced and not self._suspect:
            if self._base is not None:
                if self._raw:
                    self._queue(offset - self._base, "step" if self._set_by_step else "ntp", offset)
                self._base, self._central, self._raw = None, False, False
            return wall, boot, True
        return wall, boot, False

    def _queue(self, offset_ms: int, source: str, true_base_ms: int,
               wrong_base_ms: int | None = None) -> Correction:
        c = Correction(self.boot_id, int(offset_ms), source, int(true_base_ms), wrong_base_ms)
        if wrong_base_ms is None:  # the newest true base replaces a correction not yet taken
            self._pending = [p for p in self._pending if p.wrong_base_ms is not None]
        self._pending.append(c)
        self.last_correction = c
        return c

    def poll(self) -> bool:
        """Check for sync/step events without stamping; returns the trusted sync state."""
        with self._lock:
            return self._check()[2]

    def stamp(self) -> Stamp:
        with self._lock:
            wall, boot, synced = self._check()
            if synced:
                return Stamp(wall, boot, self.boot_id, True)
            if self._base is None:
                self._base, self._central = wall - boot, False
            if not self._central:
                self._raw = True
            return Stamp(boot + self._base, boot, self.boot_id, False, self._central)

    def learn_offset(self, offset_ms: int) -> Correction | None:
        """The central's clock minus ours, measured just now: `learn_central_base` of it."""
        with self._lock:
            base = int(self._wall() * 1000) - int(self._boot()) + int(offset_ms)
        return self.learn_central_base(base)

    def learn_central_base(self, central_base_ms: int) -> Correction | None:
        """The central's time minus our boot clock (learned during upload): the true base.

        Measured on the boot clock, it stays right across a step of our wall clock. Unsynced
        (or suspect) stamps follow it from now on, flagged corrected; a `Correction` is queued
        when readings may wait on another base. A clock that claims sync and is more than
        ``suspect_ms`` off it starts a suspect episode (one `Correction` with ``wrong_base_ms``);
        an episode ends when the clock is within half the bound again.
        """
        with self._lock:
            wall, boot, synced = self._check()
            own_base = wall - boot
            central_base = int(central_base_ms)
            offset = central_base - own_base
            self.offset_ms = offset
            if self._synced and self._suspect and abs(offset) <= self.suspect_ms // 2:
                self._suspect = False  # it agrees again: stamps on our own clock from now on
                self._base, self._central, self._raw = None, False, False
                return None
            if synced:
                if abs(offset) <= self.suspect_ms:
                    return None  # our own clock is synchronized and agrees: trust it
                self._suspect = True
                self.suspect_episodes += 1
                self._base, self._central, self._raw = central_base, True, False
                return self._queue(offset, "suspect", central_base, wrong_base_ms=own_base)
            old = own_base if self._base is None else self._base
            self._base, self._central = central_base, True
            if not self._raw:
                return None  # every unsynced reading of the boot already follows the central
            self._raw = False
            return self._queue(central_base - old, "central", central_base)

    def take_corrections(self) -> list[Correction]:
        """Corrections to apply now, oldest first."""
        with self._lock:
            out, self._pending = self._pending, []
            return out


def last_known_good_time(state_dir: str | os.PathLike[str]) -> int | None:
    """Wall ms last seen while the clock was synchronized (persisted by the agent)."""
    try:
        data = json.loads((Path(state_dir) / LKG_FILE).read_text())
        return int(data["wall_ms"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_last_known_good_time(state_dir: str | os.PathLike[str], wall_ms: int) -> None:
    """Atomically record a synchronized wall time (call rarely: SD-card wear)."""
    path = os.path.join(state_dir, LKG_FILE)  # plain strings: no interned names churned (#22, agent.py)
    tmp = os.path.splitext(path)[0] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps({"wall_ms": int(wall_ms)}))
    os.replace(tmp, path)
