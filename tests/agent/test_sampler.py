"""Sampler scheduling: intervals, rounding, fault -> backoff -> recovery, one bad sensor alone."""

from __future__ import annotations

from drivers.quality import Quality
from node.sampler import Sampler, round_to


class Reading(dict):
    def __init__(self, values, flags=None):
        super().__init__(values)
        self.flags = flags or {}


class FlakyDriver:
    """A stand-in driver with a scripted health: `fail` raises like a NACKing chip."""

    def __init__(self, values):
        self.values, self.fail, self.probes, self.reads = values, False, 0, 0

    def probe(self):
        self.probes += 1
        if self.fail:
            raise OSError(121, "Remote I/O error")

    def read(self):
        self.reads += 1
        if self.fail:
            raise OSError(121, "Remote I/O error")
        return Reading(self.values, {"pressure_hpa": int(Quality.CLAMPED)})


class NoHw:
    pin_factory = None

    def bus(self, n):
        return None

    def prepare(self, cfg):
        pass


def make(now, drivers, **kw):
    sensors = [{"type": "bme280", "name": "weather", "interval": 10.0},
               {"type": "pm25", "name": "air", "interval": 5.0}]
    reg = {"bme280": lambda cfg, hw: drivers["weather"], "pm25": lambda cfg, hw: drivers["air"]}
    s = Sampler(sensors, NoHw(), registry=reg, clock=lambda: now[0], **kw)
    s.open()
    return s


def test_round_to_resolution():
    assert round_to(1013.256789, 0.01) == 1013.26
    assert round_to(12.6, 1.0) == 13.0
    assert round_to(0.27940000001, 0.0001) == 0.2794
    assert round_to(-3.14159, 0.1) == -3.1


def test_intervals_and_rounding():
    now = [100.0]
    w = FlakyDriver({"temperature_c": 28.123456, "pressure_hpa": 1009.8765})
    a = FlakyDriver({"pm2_5_ugm3": 41.6})
    s = make(now, {"weather": w, "air": a})
    c = s.sample()
    got = {x.channel: (x.value, x.flags) for x in c.samples}
    assert got == {"weather.temperature_c": (28.12, 0),
                   "weather.pressure_hpa": (1009.88, int(Quality.CLAMPED)), "air.pm2_5_ugm3": (42.0, 0)}
    assert c.values["pressure_hpa"] == 1009.88
    now[0] = 105.0
    assert {x.channel for x in s.sample().samples} == {"air.pm2_5_ugm3"}
    now[0] = 110.0
    assert len(s.sample().samples) == 3
    assert s.next_due() == 115.0


def test_fault_backoff_and_recovery_without_stopping_the_others():
    now = [0.0]
    w, a = FlakyDriver({"temperature_c": 20.0}), FlakyDriver({"pm2_5_ugm3": 5})
    s = make(now, {"weather": w, "air": a}, backoff_initial=1.0, backoff_max=4.0)
    s.sample()
    w.fail = True
    now[0] = 10.0
    c = s.sample()
    # the failing cycle: FAULT samples for weather's channels, air goes on
    assert [(x.channel, x.value, x.flags) for x in c.samples if x.channel.startswith("weather")] == \
        [("weather.temperature_c", None, int(Quality.FAULT))]
    assert [sl.name for sl in c.new_faults] == ["weather"]
    slot = s.slots[0]
    assert slot.state == "fault" and "Remote I/O" in slot.error
    retries = []
    for t in range(11, 40):
        now[0] = float(t)
        probes = w.probes
        c = s.sample()
        assert all(not x.channel.startswith("weather") for x in c.samples)  # skipped while faulted
        if w.probes > probes:
            retries.append(t)
    assert retries[:4] == [11, 13, 17, 21]  # 1, 2, 4, then capped at 4 s
    w.fail = False
    now[0] = 45.0
    c = s.sample()
    assert [sl.name for sl in c.recovered] == ["weather"]
    assert any(x.channel == "weather.temperature_c" and x.value == 20.0 for x in c.samples)
    assert slot.state == "ok" and slot.backoff == 1.0
    assert a.reads >= 8  # the healthy sensor kept its 5 s interval throughout


def test_unknown_constructor_failure_faults_only_that_sensor():
    now = [0.0]
    a = FlakyDriver({"pm2_5_ugm3": 5})

    def broken(cfg, hw):
        raise RuntimeError("no such bus /dev/i2c-7")

    s = Sampler([{"type": "bme280", "name": "weather", "interval": 10.0},
                 {"type": "pm25", "name": "air", "interval": 5.0}], NoHw(),
                registry={"bme280": broken, "pm25": lambda cfg, hw: a}, clock=lambda: now[0])
    s.open()
    c = s.sample()
    assert [x.channel for x in c.samples] == ["air.pm2_5_ugm3"]
    assert s.states()[0]["state"] == "fault" and "i2c-7" in s.states()[0]["error"]


def test_storm_cap_shortens_intervals():
    now = [0.0]
    s = make(now, {"weather": FlakyDriver({"temperature_c": 1}), "air": FlakyDriver({"pm2_5_ugm3": 1})})
    s.sample()
    assert s.next_due() == 5.0
    s.interval_cap = 2.0
    s.reschedule()
    assert s.next_due() == 2.0


def test_a_warming_up_sensor_does_not_hold_up_the_first_cycle():
    from node.sampler import WARMUP

    now = [0.0]

    class Ranger(FlakyDriver):
        pings, ping_interval_s = 5, 0.06

    r, w = Ranger({"depth_cm": 3.0}), FlakyDriver({"temperature_c": 20.0})
    s = Sampler([{"type": "bme280", "name": "weather", "interval": 1.0},
                 {"type": "flood", "name": "flood", "interval": 1.0}], NoHw(),
                registry={"bme280": lambda c, h: w, "flood": lambda c, h: r}, clock=lambda: now[0])
    s.open()
    assert r.probes == 1  # probed at open: it starts pinging in the background
    assert [x.channel for x in s.sample().samples] == ["weather.temperature_c"]
    warm = WARMUP["flood"](r)
    assert s.next_due() == warm == 0.35
    now[0] = warm  # the ranger's cycle takes its air sensor along (speed of sound), air first
    assert [x.channel for x in s.sample().samples] == ["weather.temperature_c", "flood.depth_cm"]
    now[0] = 1.0  # then both on the same grid: one cycle, one commit
    assert {x.channel for x in s.sample().samples} == {"weather.temperature_c", "flood.depth_cm"}


class ScriptedDriver(FlakyDriver):
    """A driver whose read() hands back exactly what the test says (a NaN, nothing, not a mapping)."""

    def __init__(self, script):
        super().__init__({})
        self.script = list(script)

    def read(self):
        self.reads += 1
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def test_a_nan_from_a_driver_is_contained_to_that_quantity():
    """#21: NaN raised out of round() in Agent.run: no cycle stored, a restart loop under systemd."""
    now = [0.0]
    w = ScriptedDriver([Reading({"temperature_c": float("nan"), "pressure_hpa": 1000.123})])
    a = ScriptedDriver([Reading({"pm2_5_ugm3": float("inf")})])
    s = make(now, {"weather": w, "air": a})
    c = s.sample()
    got = {x.channel: (x.value, x.flags) for x in c.samples}
    assert got["weather.temperature_c"] == (None, int(Quality.FAULT))
    assert got["weather.pressure_hpa"] == (1000.12, 0)
    assert got["air.pm2_5_ugm3"] == (None, int(Quality.FAULT))
    assert c.values == {"temperature_c": None, "pressure_hpa": 1000.12, "pm2_5_ugm3": None}


def test_a_driver_that_hands_back_garbage_faults_only_itself():
    now = [0.0]
    w = ScriptedDriver([object()])  # not a mapping: AttributeError inside the sampler, contained
    a = FlakyDriver({"pm2_5_ugm3": 5})
    s = make(now, {"weather": w, "air": a})
    c = s.sample()
    assert [x.channel for x in c.samples] == ["air.pm2_5_ugm3"]
    assert s.slots[0].state == "fault" and [sl.name for sl in c.new_faults] == ["weather"]


def test_an_all_none_reading_is_stored_flagged_and_not_backed_off():
    """#21: a ranger hearing no echo went silent for 5 minutes of backoff."""
    now = [0.0]
    no_echo = Reading({"depth_cm": None, "distance_cm": None},
                      {"depth_cm": int(Quality.OUT_OF_RANGE), "distance_cm": int(Quality.OUT_OF_RANGE)})
    w = ScriptedDriver([no_echo] * 4 + [Reading({"depth_cm": 3.0, "distance_cm": 97.0})])
    s = make(now, {"weather": w, "air": FlakyDriver({"pm2_5_ugm3": 5})})
    first = s.sample()
    flags = int(Quality.OUT_OF_RANGE | Quality.FAULT)
    weather = [(x.value, x.flags) for x in first.samples if x.channel.startswith("weather")]
    assert weather == [(None, flags)] * 2
    assert [sl.name for sl in first.new_faults] == ["weather"] and s.slots[0].state == "no_data"
    for t in (10.0, 20.0, 30.0):  # on its 10 s interval, every time, one incident only
        now[0] = t
        c = s.sample()
        assert len([x for x in c.samples if x.channel.startswith("weather")]) == 2 and not c.new_faults
    now[0] = 40.0
    c = s.sample()
    assert [sl.name for sl in c.recovered] == ["weather"] and s.slots[0].state == "ok"
    assert c.values["depth_cm"] == 3.0 and w.reads == 5
