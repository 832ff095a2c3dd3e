"""`serve --workers N`: N receiver processes sharing one listening socket, over one database.

The parent binds the socket, forks the workers (each opens its own store connection *after* the
fork: a database connection must never cross a fork), restarts a worker that dies, and stops them
all on SIGTERM/SIGINT. The kernel spreads accepted connections over the workers. Nothing a request
needs lives in a worker's memory: replay protection, receipts, per-node counters and the stored set
are in the database, so two requests of one node may land on two workers (docs/central.md,
"Several receiver processes").
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("streetnode.central")

STOP_GRACE_S = 10.0  # a worker finishing its in-flight requests after SIGTERM
RESTART_WINDOW_S = 5.0  # a worker that dies sooner than this after its start counts as a crash loop
MAX_QUICK_DEATHS = 5  # crash loops in a row before the whole service gives up (systemd restarts it)


@dataclass
class _Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0
    exits: list[int] = field(default_factory=list)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class Workers:
    """Fork and supervise ``count`` processes that each run ``serve_one(sock)`` until told to stop.

    ``serve_one`` runs in the child: it opens the store, builds the app and serves ``sock`` until
    SIGTERM (uvicorn's own handler), then returns; its return value is the child's exit status.
    """

    def __init__(self, sock: socket.socket, count: int, serve_one: Callable[[socket.socket], int], *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if count < 1:
            raise ValueError("--workers: expected at least 1")
        self._sock = sock
        self._serve_one = serve_one
        self._monotonic = monotonic
        self._slots = [_Slot(i) for i in range(count)]
        self._stopping = False

    # ------------------------------------------------------------------ child
    def _spawn(self, slot: _Slot) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C reaches the parent
                status = self._serve_one(self._sock)
            except BaseException as e:
                log.error("worker %d: %s", slot.index, e)
            finally:
                os._exit(status)
        slot.pid = pid
        slot.started = self._monotonic()

    # ----------------------------------------------------------------- parent
    def pids(self) -> list[int]:
        return [s.pid for s in self._slots if s.pid]

    def run(self, on_started: Callable[[], None] = lambda: None) -> int:
        """Serve until SIGTERM/SIGINT; returns 0 after a clean stop, 1 if workers kept crashing."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def request_stop(_signum: int, _frame: object) -> None:
            self._stopping = True

        for sig in previous:
            signal.signal(sig, request_stop)
        status = 0
        try:
            for slot in self._slots:
                self._spawn(slot)
            on_started()
            while not self._stopping:
                time.sleep(0.2)
                if not self._reap_and_restart():
                    status = 1
                    break
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _reap_and_restart(self) -> bool:
        """Restart workers that exited; False when one keeps dying right after its start."""
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return True
            slot = next((s for s in self._slots if s.pid == pid), None)
            if slot is None:  # a child of someone else in this process (a forwarder's helper)
                continue
            code = _exit_code(raw)
            slot.exits.append(code)
            slot.pid = 0
            if self._stopping:
                continue
            lived = self._monotonic() - slot.started
            slot.quick_deaths = slot.quick_deaths + 1 if lived < RESTART_WINDOW_S else 0
            log.error("worker %d (pid %d) exited with %s after %.1f s; restarting it",
                      slot.index, pid, code, lived)
            if slot.quick_deaths >= MAX_QUICK_DEATHS:
                log.error("worker %d died %d times within %.0f s of its start: stopping the receiver",
                          slot.index, slot.quick_deaths, RESTART_WINDOW_S)
                return False
            self._spawn(slot)

    def _stop_all(self) -> None:
        for slot in self._slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, signal.SIGTERM)
                except ProcessLookupError:
                    slot.pid = 0
        deadline = self._monotonic() + STOP_GRACE_S
        while any(s.pid for s in self._slots) and self._monotonic() < deadline:
            self._reap_only()
            time.sleep(0.05)
        for slot in self._slots:
            if slot.pid:
                log.error("worker %d (pid %d) did not stop within %.0f s: killed", slot.index, slot.pid,
                          STOP_GRACE_S)
                try:
                    os.kill(slot.pid, signal.SIGKILL)
                    os.waitpid(slot.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                slot.pid = 0

    def _reap_only(self) -> None:
        for slot in self._slots:
            if not slot.pid:
                continue
            try:
                pid, raw = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                slot.pid = 0
                continue
            if pid:
                slot.exits.append(_exit_code(raw))
                slot.pid = 0
