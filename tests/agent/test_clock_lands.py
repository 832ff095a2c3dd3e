"""Issue #20, fault 4, with the whole agent: an emulated clock at 1970 offline then online, and a
clock a year behind that reports itself synced. The real agent (sampling and upload threads), the
real central on loopback behind the fault proxy (refusing connections = offline). The node's wall
clock is emulated as the emulator's ``[clock]`` does (real time shifted; the boot clock is the
machine's own), so each stored reading's true time is its boot time plus the true base."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from node import config
from node.clock import Clock, boot_ms
from node.model import Quality
from tests.agent.conftest import NODE, wait_for, write_config
from tests.support.faultproxy import FaultProxy

YEAR_S = 365 * 86400


@pytest.fixture
def proxy(central):
    url, _store, _key = central
    with FaultProxy(int(url.rsplit(":", 1)[1]), lifetime=120) as p:
        p.set("refuse", count=None)  # the uplink is down
        yield p


def _run(tmp_path, proxy, key, clock: Clock, offline_readings: int, online_readings: int, store):
    from node.agent import Agent

    sensors = '[[sensors]]\ntype = "bme280"\nname = "weather"\ninterval = "0.1s"\n'
    cfg = config.load(write_config(tmp_path, url=proxy.url, key=key, sensors=sensors, speed=1.0))
    agent = Agent(cfg, clock=clock)
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: agent.counters["readings"] >= offline_readings, 30, "readings while offline")
        assert store.count_readings(NODE) == 0
        proxy.set("pass", count=None)  # the uplink comes back
        wait_for(lambda: store.count_readings(NODE) >= offline_readings + online_readings, 30,
                 "the backlog and newer readings at the central")
    finally:
        agent.stop()
        runner.join(10)
    assert not runner.is_alive()
    return agent


def _off_true_time_ms(store) -> list[int]:
    true_base = int(time.time() * 1000) - boot_ms()
    return [r.wall_ms - (r.boot_ms + true_base) for r in store.readings(NODE)]


def test_booted_at_1970_offline_then_online_every_reading_stored_on_true_time(tmp_path, central, proxy,
                                                                              caplog):
    _url, store, key = central
    shift = time.time() - 5.0
    clock = Clock(wall=lambda: time.time() - shift, sync=lambda: False, boot_id="boot-1970")
    with caplog.at_level(logging.DEBUG, logger="streetnode"):
        agent = _run(tmp_path, proxy, key, clock, 15, 10, store)
    off = _off_true_time_ms(store)
    assert len(off) >= 25 and max(abs(x) for x in off) < 1000, f"off true time (ms): {sorted(off)[-5:]}"
    assert all(r.flags & Quality.CLOCK_CORRECTED for r in store.readings(NODE))
    assert agent.counters["corrections"] == 1  # the offline readings, once
    messages = [r.getMessage() for r in caplog.records]
    corrected = [m for m in messages if "corrected by" in m]
    assert len(corrected) == 1 and "+0 ms" not in corrected[0], corrected
    health = store.list_nodes(NODE)[0].health
    assert health["clock_state"] == "unsynced" and health["clock_offset_ms"] > 50 * YEAR_S * 1000


def test_year_behind_but_reporting_synced_is_suspect_flagged_and_stored_on_true_time(tmp_path, central,
                                                                                      proxy):
    _url, store, key = central
    clock = Clock(wall=lambda: time.time() - YEAR_S, sync=lambda: True, boot_id="boot-year")
    agent = _run(tmp_path, proxy, key, clock, 15, 10, store)
    off = _off_true_time_ms(store)
    assert len(off) >= 25 and max(abs(x) for x in off) < 1000, f"off true time (ms): {sorted(off)[-5:]}"
    assert all(r.flags & Quality.CLOCK_CORRECTED for r in store.readings(NODE))
    suspect = [i for i in store.incidents(NODE) if i.kind == "clock_suspect"]
    assert len(suspect) == 1, store.incidents(NODE)  # one incident per episode
    assert "+31536000" in suspect[0].detail
    health = store.list_nodes(NODE)[0].health
    assert health["clock_state"] == "suspect" and health["clock_synced"] is True
    st = agent.state()["clock"]
    assert st["state"] == "suspect" and st["suspect_episodes"] == 1 and st["offset_ms"] > 0

    from node.commands.status import render

    info = {"node_id": NODE, "daemon": {"running": True, "pid": 1}, "led": "ok",
            "backlog": {"readings": 0}, "upload": {"enabled": False}, "sensors": [],
            "storm": {"active": False}, "clock": {**st, "synced_now": True}}
    text = render(info)
    assert "SUSPECT" in text and "365" in text, text
