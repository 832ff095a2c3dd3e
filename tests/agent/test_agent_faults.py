"""Agent on the emulated rig: a faulted sensor recovers by itself; a hung loop starves the watchdog."""

from __future__ import annotations

import socket
import threading
import time

from node import config
from node.agent import Agent
from node.notify import Notifier


def _cfg(tmp_path):
    return config.validate({
        "node": {"id": "fault-node", "state_dir": str(tmp_path / "state")},
        "sensors": [{"type": "bme280", "name": "weather", "interval": "0.1s"},
                    {"type": "pm25", "name": "air", "interval": "0.1s"}],
        "emulation": {"enabled": True, "scenario": "calm", "speed": 1.0},
    })


def _wait(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _states(agent):
    return {s.name: s.state for s in agent.sampler.slots}


def test_absent_chip_faults_only_that_sensor_and_it_recovers_by_itself(tmp_path):
    agent = Agent(_cfg(tmp_path))
    agent.start()
    rig = agent._hw.rig
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert _wait(lambda: agent.counters["readings"] > 10)
        rig.inject("bme280", "absent")
        assert _wait(lambda: _states(agent)["weather"] == "fault")
        assert _wait(lambda: agent.led_state == "fault")
        air_reads = agent.sampler.slots[1].reads
        assert _wait(lambda: agent.sampler.slots[1].reads > air_reads + 10)  # the other goes on
        assert _states(agent)["air"] == "ok"
        rig.clear("bme280")
        assert _wait(lambda: _states(agent)["weather"] == "ok")  # re-probed with backoff, recovered
        assert agent.sampler.slots[0].faults == 1
    finally:
        agent.stop()
        runner.join(5)
    assert agent.buffer.stats().incidents_pending >= 1  # the sensor_fault incident rides to the central


def test_a_hung_sampling_loop_stops_the_watchdog_pings(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(0.05)
    got: list[tuple[float, str]] = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                got.append((time.monotonic(), rx.recv(4096).decode()))
            except TimeoutError:
                pass

    threading.Thread(target=reader, daemon=True).start()
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    agent = Agent(_cfg(tmp_path), notifier=Notifier(path))
    agent.start()
    chip = agent._hw.rig.bme280
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()

    def pings_between(a, b):
        return sum(1 for t, m in got if m == "WATCHDOG=1" and a <= t < b)

    try:
        assert _wait(lambda: pings_between(0, time.monotonic()) >= 3)
        with chip.lock:  # an I2C transfer that never completes: the sampling loop hangs in read()
            t0 = time.monotonic()
            time.sleep(0.3)  # let a cycle run into the held bus
            t1 = time.monotonic()
            time.sleep(1.0)
            t2 = time.monotonic()
        assert pings_between(t1, t2) == 0, "a hung loop must not feed the watchdog"
        assert _wait(lambda: pings_between(t2, time.monotonic()) >= 3)  # alive again: pings resume
        assert t0 < t1
    finally:
        agent.stop()
        runner.join(5)
        done.set()
