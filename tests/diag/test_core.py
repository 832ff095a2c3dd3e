"""The runner: ordering, prerequisites, deadlines, crashes, exit codes."""

from __future__ import annotations

import threading

import pytest

from node.diag.core import Check, Runner, Status, exit_code, fail, ok, skip, warn


class Ctx:
    debug = False

    def bind_runner(self, runner):
        self.runner = runner


def test_results_come_back_in_declared_order_whatever_finishes_first():
    slow_done = threading.Event()

    def slow(ctx):
        slow_done.wait(0.2)
        return ok("slow", "slow one")

    checks = [Check("slow", slow), Check("fast", lambda ctx: ok("fast", "fast one"))]
    results = Runner(checks).run(Ctx())
    assert [r.id for r in results] == ["slow", "fast"]


def test_needs_runs_after_its_prerequisite_and_sees_its_result():
    seen = []

    def second(ctx):
        prior = ctx.runner.done("first")
        seen.append(prior[0].status)
        return ok("second", "saw first")

    checks = [Check("second", second, needs=("first",)),
              Check("first", lambda ctx: fail("first", "broken", "fix it"))]
    results = Runner(checks).run(Ctx())
    assert seen == [Status.FAIL]
    assert [r.id for r in results] == ["second", "first"]


def test_a_hung_check_becomes_a_fail_at_its_deadline_and_the_rest_still_report():
    release = threading.Event()

    def hung(ctx):
        release.wait(30)
        return ok("hung", "never reported")

    checks = [Check("hung", hung, deadline=0.2, remedy_on_timeout="is the network up?"),
              Check("other", lambda ctx: ok("other", "fine"))]
    try:
        results = Runner(checks, overall_deadline=5).run(Ctx())
    finally:
        release.set()
    assert results[0].status is Status.FAIL
    assert "no answer within 0.2 s" in results[0].summary
    assert results[0].remedy == "is the network up?"
    assert results[1].status is Status.PASS


def test_overall_deadline_caps_everything_and_unstarted_checks_are_skipped():
    release = threading.Event()

    def hung(ctx):
        release.wait(30)
        return ok("hung", "x")

    checks = [Check("hung", hung, deadline=60),
              Check("after", lambda ctx: ok("after", "x"), needs=("hung",))]
    try:
        results = Runner(checks, overall_deadline=0.3).run(Ctx())
    finally:
        release.set()
    assert results[0].status is Status.FAIL and "0.3 s" in results[0].summary
    assert results[1].status is Status.FAIL or results[1].status is Status.SKIP


def test_a_crashing_check_is_reported_not_raised():
    def boom(ctx):
        raise RuntimeError("sensor exploded")

    results = Runner([Check("boom", boom)]).run(Ctx())
    assert results[0].status is Status.FAIL
    assert "RuntimeError: sensor exploded" in results[0].summary


def test_a_check_may_return_several_results():
    both = [ok("multi.a", "a"), warn("multi.b", "b", "do b")]
    results = Runner([Check("multi", lambda ctx: both)]).run(Ctx())
    assert [(r.id, r.status) for r in results] == [("multi.a", Status.PASS), ("multi.b", Status.WARN)]


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError):
        Runner([Check("a", lambda c: ok("a", "")), Check("a", lambda c: ok("a", ""))])


@pytest.mark.parametrize(("statuses", "code"), [
    ([], 0), ([Status.PASS], 0), ([Status.PASS, Status.SKIP], 0), ([Status.WARN, Status.PASS], 1),
    ([Status.WARN, Status.FAIL], 2), ([Status.SKIP, Status.FAIL], 2),
])
def test_exit_codes(statuses, code):
    make = {Status.PASS: lambda: ok("x", ""), Status.SKIP: lambda: skip("x", ""),
            Status.WARN: lambda: warn("x", "", ""), Status.FAIL: lambda: fail("x", "", "")}
    assert exit_code([make[s]() for s in statuses]) == code
