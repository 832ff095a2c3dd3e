"""The node's depth pipeline: spike filter, rate of rise, sampling that follows the water,
and the speed-of-sound correction with the same cycle's air (emulated rig, pin level)."""

from __future__ import annotations

import time

import pytest

from drivers.emulator import EmulatedRig
from drivers.quality import Quality
from node.depth import DepthFilter
from node.sampler import WARMUP, EmulatedHardware, Sampler
from tests.drivers.conftest import ManualClock


def test_a_single_outlier_is_flagged_and_a_confirmed_step_is_not():
    f = DepthFilter(spike_cm=15.0)
    assert not f.observe(0, 2.0).spike
    assert f.observe(60, 40.0).spike  # a car roof under the ranger
    assert not f.observe(120, 2.5).spike  # back to the street: the 40 stays an outlier
    assert f.observe(180, 30.0).spike  # a real step...
    assert not f.observe(240, 31.0).spike  # ...confirmed by the next reading
    assert not f.observe(300, 32.0).spike


def test_nothing_is_a_spike_while_rain_falls():
    f = DepthFilter(spike_cm=15.0)
    f.observe(0, 2.0)
    f.rain(10, 35.0)
    assert not f.observe(60, 40.0).spike
    f.rain(100, 0.0)  # stopped, but it rained within the last 15 min
    assert not f.observe(120, 2.0).spike
    assert f.observe(60 + 1000, 40.0).spike


def test_rise_is_the_slope_in_cm_per_10_minutes():
    f = DepthFilter(spike_cm=15.0)
    assert f.observe(0, 10.0).rise_cm_10min is None
    assert f.observe(60, 10.5).rise_cm_10min is None  # less than 2 min of history
    verdict = None
    for i in range(2, 12):
        verdict = f.observe(60 * i, 10.0 + 0.5 * i)
    assert verdict.rise_cm_10min == pytest.approx(5.0)  # 0.5 cm/min
    f.observe(720, 80.0)  # a spike does not bend the slope
    assert f.rise_cm_10min() == pytest.approx(5.0)


class Ranger:
    """A stand-in ranger (registry) whose water rises as the test says."""

    pings, ping_interval_s = 1, 0.0

    def __init__(self):
        self.depth = 0.0

    def probe(self):
        pass

    def read(self):
        from drivers.base import Measurement

        return Measurement({"depth_cm": self.depth, "distance_cm": 300.0 - self.depth})

    def close(self):
        pass


class NoHw:
    pin_factory = None
    speed = 1.0

    def prepare(self, cfg):
        pass


def test_the_ranger_samples_at_the_storm_interval_while_the_water_rises():
    now = [0.0]
    ranger = Ranger()
    cfg = {"type": "flood", "name": "flood", "interval": 60.0, "mount_height_cm": 300.0,
           "rising_cm_10min": 2.0, "spike_cm": 15.0}
    s = Sampler([cfg], NoHw(), registry={"flood": lambda c, h: ranger}, clock=lambda: now[0],
                rising_interval=5.0)
    s.open()
    slot = s.slots[0]
    for _ in range(4):  # flat water: the ranger's own minute
        now[0] = max(now[0], slot.first_due, slot.next_due)
        s.sample()
    assert s.interval(slot) == 60.0
    rises = []
    while now[0] < 600:  # 1 cm per minute
        now[0] = max(slot.first_due, slot.next_due)
        ranger.depth += 1.0 * s.interval(slot) / 60.0
        rises += [x.value for x in s.sample().samples if x.channel == "flood.rise_cm_10min"]
        if s.interval(slot) == 5.0:
            break
    assert s.interval(slot) == 5.0 and slot.next_due - now[0] == pytest.approx(5.0)
    assert rises[-1] >= 2.0
    for _ in range(200):  # the water stands: back to the minute
        now[0] = max(slot.first_due, slot.next_due)
        s.sample()
    assert s.interval(slot) == 60.0


@pytest.mark.parametrize("compensate", [True, False])
def test_depth_is_corrected_with_the_same_cycles_air(compensate):
    clock = ManualClock(0.0)  # the storm's start: 32 °C, 75 % RH, a dry street
    rig = EmulatedRig("storm", clock=clock, autorun=False, seed=2, timing=False)
    sensors = [{"type": "bme280", "name": "weather", "interval": 600.0, "bus": 1, "address": 0x76,
                "oversampling": 1},
               {"type": "flood", "name": "flood", "interval": 1.0, "trigger_pin": 23, "echo_pin": 24,
                "mount_height_cm": 300.0, "max_distance_cm": 450.0, "pings": 5, "compensate": compensate,
                "spike_cm": 15.0, "rising_cm_10min": 0.5}]
    now = [0.0]
    s = Sampler(sensors, EmulatedHardware(rig), clock=lambda: now[0])
    s.open()
    try:
        now[0] = 0.0
        s.sample()  # weather first; the ranger warms up
        time.sleep(WARMUP["flood"](s.slots[1].driver) + 0.2)
        now[0] = 1.0
        cycle = s.sample()
        got = {x.channel: x for x in cycle.samples}
        depth = got["flood.depth_cm"]
        if compensate:
            assert "weather.temperature_c" in got  # the air sensor came along, 599 s early
            assert depth.value == pytest.approx(0.0, abs=1.0) and depth.flags & Quality.COMPENSATED
        else:
            assert "weather.temperature_c" not in got
            assert depth.value > 5.0 and not depth.flags & Quality.COMPENSATED  # ~6.7 cm of air
    finally:
        s.close()
        rig.close()
