"""The upload thread's schedule (node/upload_loop.py) with the real uploader, buffer, central and proxy."""

from __future__ import annotations

import threading
import time

from node.upload_loop import UploadLoop
from tests.agent.conftest import wait_for
from tests.uploader.conftest import fill
from tests.uploader.test_uploader import decoded, make_uploader


class Rounds:
    def __init__(self, timer=time.monotonic):
        self.timer = timer
        self.done: list[tuple[float, object, bool]] = []  # (end time, result, alert)
        self.errors: list[Exception] = []

    def __call__(self, res, alert, error):
        if error is not None:
            self.errors.append(error)
        else:
            self.done.append((self.timer(), res, alert))


def start(loop):
    t = threading.Thread(target=loop.run, daemon=True)
    t.start()
    return t


def test_a_storm_alert_raised_during_a_backoff_goes_out_at_once(buf, central, proxy):
    """#21: the alert round returned early while the uploader backed off, and the alert was lost."""
    fill(buf, 20)
    up = make_uploader(buf, proxy.url, central.key, backoff_initial=60, rng=lambda: 1.0, live_readings=10)
    rounds = Rounds()
    loop = UploadLoop(lambda: up, interval=lambda: 30.0, on_round=rounds)
    proxy.set("status", count=1, status=503, body={"error": "unavailable"})
    t = start(loop)
    try:
        assert wait_for(lambda: len(rounds.done) == 1)
        assert rounds.done[0][1].error.startswith("HTTP 503") and not up.ready()  # a minute of backoff
        loop.alert()
        assert wait_for(lambda: len(rounds.done) == 2, timeout=10)
        _, res, alert = rounds.done[1]
        assert alert and res.alert_sent and not loop.alert_pending
        assert [b.health.get("alert") for b in decoded(proxy)].count(True) == 1  # went out once
    finally:
        loop.stop()
        t.join(10)
    assert not rounds.errors


def test_an_alert_whose_round_fails_stays_pending_until_it_is_delivered(buf, central, proxy):
    fill(buf, 20)
    up = make_uploader(buf, proxy.url, central.key, backoff_initial=1, rng=lambda: 1.0, live_readings=10)
    rounds = Rounds()
    loop = UploadLoop(lambda: up, interval=lambda: 60.0, on_round=rounds)
    t = start(loop)
    try:
        assert wait_for(lambda: len(rounds.done) == 1)  # the first round: everything delivered
        fill(buf, 2, start=20)
        proxy.set("status", count=1, status=502, body="<html>bad gateway</html>")
        loop.alert()
        assert wait_for(lambda: len(rounds.done) >= 3, timeout=15)  # failed, then after the backoff: sent
        alerts = [(r.error is None, r.alert_sent) for _, r, alert in rounds.done if alert]
        assert alerts[0] == (False, False) and alerts[-1] == (True, True) and not loop.alert_pending
    finally:
        loop.stop()
        t.join(10)


def test_rounds_go_back_to_back_while_a_backlog_fills_them(buf, central, proxy):
    """#21: each round that lasted its interval was followed by an idle interval: half duty."""
    total = fill(buf, 400)  # 2000 readings, 40 batches of 50, each answer held 0.25 s
    up = make_uploader(buf, proxy.url, central.key, live_readings=50, max_batch_readings=50)
    proxy.set("delay", delay=0.25)
    rounds = Rounds()
    loop = UploadLoop(lambda: up, interval=lambda: 2.0, on_round=rounds, min_round_s=2.0)
    t = start(loop)
    try:
        assert wait_for(lambda: rounds.done and rounds.done[-1][1].backlog_empty, timeout=60)
    finally:
        loop.stop()
        t.join(10)
    results = [r for _, r, _ in rounds.done]
    assert sum(r.readings for r in results) == total and central.seqs() == list(range(1, total + 1))
    full = [i for i, r in enumerate(results[:-1]) if r.deadline_reached]
    assert len(full) >= 2
    for i in full:  # the next round started at once, not an interval later
        assert results[i + 1].started_at - rounds.done[i][0] < 1.0
