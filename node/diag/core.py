"""The check framework: results, the concurrent runner with deadlines, exit codes.

A `Check` is a named function of the `DiagContext` that returns one `Result`
(or several, e.g. one per sensor). Checks run in their own daemon threads, each
as soon as the checks it `needs` have finished, and each with its own deadline;
the whole run has an overall deadline too. A check still running at its
deadline becomes a FAIL saying so, and is abandoned (daemon thread), so a hung
network or bus can never hold the technician longer than the overall deadline.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.i18n import N_, _, number


class Status(enum.IntEnum):
    """Ordered by severity: the worst status decides the exit code."""

    PASS = 0
    SKIP = 1  # not applicable here, or not checked because a prerequisite failed
    WARN = 2
    FAIL = 3


@dataclass(frozen=True)
class Result:
    id: str
    status: Status
    summary: str
    detail: str = ""
    remedy: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "status": self.status.name, "summary": self.summary,
                "detail": self.detail, "remedy": self.remedy}


def ok(id: str, summary: str, detail: str = "") -> Result:
    return Result(id, Status.PASS, summary, detail)


def warn(id: str, summary: str, remedy: str, detail: str = "") -> Result:
    return Result(id, Status.WARN, summary, detail, remedy)


def fail(id: str, summary: str, remedy: str, detail: str = "") -> Result:
    return Result(id, Status.FAIL, summary, detail, remedy)


def skip(id: str, summary: str, detail: str = "") -> Result:
    return Result(id, Status.SKIP, summary, detail)


CheckFn = Callable[[Any], "Result | Sequence[Result]"]


@dataclass
class Check:
    id: str
    fn: CheckFn
    deadline: float = 3.0  # seconds from the check's start
    needs: tuple[str, ...] = ()
    # translated when shown (a check list is built before the language may change: --json)
    remedy_on_timeout: str = N_("run `streetnode diag` again; if it hangs again, report it with "
                                "`streetnode bundle`")


@dataclass
class Report:
    results: list[Result]
    duration_s: float
    node: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {s.name.lower(): 0 for s in Status}
        for r in self.results:
            out[r.status.name.lower()] += 1
        return out

    @property
    def worst(self) -> Status:
        return max((r.status for r in self.results), default=Status.PASS)

    @property
    def exit_code(self) -> int:
        return exit_code(self.results)


def exit_code(results: Sequence[Result]) -> int:
    """0 when everything passed (or was skipped), 1 with warnings, 2 with failures."""
    worst = max((r.status for r in results), default=Status.PASS)
    return {Status.PASS: 0, Status.SKIP: 0, Status.WARN: 1, Status.FAIL: 2}[worst]


def _normalize(check: Check, out: object) -> list[Result]:
    if isinstance(out, Result):
        return [out]
    if isinstance(out, list | tuple) and out and all(isinstance(r, Result) for r in out):
        return list(out)
    return [fail(check.id, _("check returned no result"), _("report this with `streetnode bundle`"))]


def _crashed(check: Check, exc: BaseException) -> list[Result]:
    return [fail(check.id, _("check crashed: {kind}: {message}").format(kind=type(exc).__name__,
                                                                          message=exc),
                 _("report this with `streetnode bundle` (set STREETNODE_DEBUG=1 for a traceback)"))]


class Runner:
    """Run checks concurrently, honouring ``needs`` and per-check and overall deadlines."""

    def __init__(self, checks: Sequence[Check], *, overall_deadline: float = 9.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        ids = [c.id for c in checks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate check ids: {ids}")  # i18n: no (a bug)
        self._checks = list(checks)
        self._overall = overall_deadline
        self._clock = clock
        self._cond = threading.Condition()
        self._done: dict[str, list[Result]] = {}
        self._started: dict[str, float] = {}

    def done(self, check_id: str) -> list[Result] | None:
        """Results of a finished check (for checks that look at their prerequisites)."""
        with self._cond:
            return self._done.get(check_id)

    def _run_one(self, check: Check, ctx: object) -> None:
        try:
            results = _normalize(check, check.fn(ctx))
        except Exception as e:  # a check must never take the whole diag down
            if getattr(ctx, "debug", False):
                import traceback
                traceback.print_exc()
            results = _crashed(check, e)
        with self._cond:
            if check.id not in self._done:  # not already declared timed out
                self._done[check.id] = results
            self._cond.notify_all()

    def run(self, ctx: object) -> list[Result]:
        start = self._clock()
        end = start + self._overall
        bind = getattr(ctx, "bind_runner", None)
        if bind:
            bind(self)
        known = {c.id for c in self._checks}
        pending = list(self._checks)
        with self._cond:
            while True:
                now = self._clock()
                for c in list(pending):
                    if all(n in self._done or n not in known for n in c.needs):
                        pending.remove(c)
                        self._started[c.id] = now
                        threading.Thread(target=self._run_one, args=(c, ctx), daemon=True,
                                         name=f"diag-{c.id}").start()
                for c in self._checks:
                    t0 = self._started.get(c.id)
                    if t0 is not None and c.id not in self._done and now >= min(t0 + c.deadline, end):
                        limit = min(c.deadline, end - t0)
                        self._done[c.id] = [fail(c.id, _("no answer within {seconds} s").format(
                            seconds=number(limit, 1)), _(c.remedy_on_timeout))]
                if len(self._done) == len(self._checks):
                    break
                if now >= end:  # checks that never got to start
                    for c in pending:
                        self._done[c.id] = [skip(c.id, _("not run: diag ran out of time"))]
                    break
                waits = [min(self._started[c.id] + c.deadline, end) - now
                         for c in self._checks if c.id in self._started and c.id not in self._done]
                self._cond.wait(timeout=max(0.001, min(waits, default=end - now)))
        ordered: list[Result] = []
        for c in self._checks:
            ordered += self._done[c.id]
        return ordered
