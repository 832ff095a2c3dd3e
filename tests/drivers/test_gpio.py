from __future__ import annotations

import time

import pytest

from drivers.emulator import EmulatedRig, scenario
from drivers.emulator.gpio import attach_sonar, mock_factory, tip
from drivers.flood import FloodRanger, compensate
from drivers.led import PATTERNS, StatusLED
from drivers.quality import Quality
from drivers.rain import RainGauge
from tests.drivers.conftest import ManualClock

TRIG, ECHO, REED, LED_PIN = 23, 24, 17, 27


def wait_pings(ranger: FloodRanger, n: int, timeout_s: float = 3.0) -> None:
    start, deadline = ranger.pings_seen, time.monotonic() + timeout_s
    while ranger.pings_seen < start + n and time.monotonic() < deadline:
        time.sleep(0.002)


@pytest.fixture
def storm_rig():
    clock = ManualClock(0.0)
    rig = EmulatedRig("storm", clock=clock, autorun=False, seed=1)
    yield rig, clock
    rig.close()


def test_flood_depth_within_1_cm_across_the_storm_once_compensated(storm_rig):
    """The emulated echo travels at the speed of sound in the scenario's air; gpiozero assumes
    343.26 m/s, so the raw depth is several cm too deep in Hanoi's heat, the compensated one is not."""
    rig, clock = storm_rig
    rig.attach_ranger(TRIG, ECHO, mount_height_cm=300.0)
    ranger = FloodRanger(TRIG, ECHO, mount_height_cm=300.0, pin_factory=rig.pin_factory,
                         ping_interval_s=0.002)
    ranger.probe()
    try:
        depths, raw_errors = [], []
        for hour in range(0, 49, 2):
            clock.t = hour * 3600.0
            wait_pings(ranger, ranger.pings)  # pings taken after the truth moved
            raw = ranger.read()
            truth = rig.truth()
            m = compensate(raw, 300.0, truth.temperature_c, truth.humidity_pct, truth.pressure_hpa)
            assert m["depth_cm"] == pytest.approx(truth.depth_cm, abs=1.0), (hour, m)
            assert m["distance_cm"] + m["depth_cm"] == pytest.approx(300.0, abs=1.0)
            assert m.flags["depth_cm"] == Quality.COMPENSATED
            depths.append(m["depth_cm"])
            raw_errors.append(raw["depth_cm"] - truth.depth_cm)
        assert max(depths) == pytest.approx(45.0, abs=1.0) and depths[-1] < 1.0
        assert min(raw_errors) > 3.0 and max(raw_errors) > 6.0  # 25-32 °C, humid: 3.9-7.6 cm
    finally:
        ranger.close()


def test_first_read_is_fast_and_later_reads_do_not_wait():
    rig = EmulatedRig("calm")
    rig.attach_ranger(TRIG, ECHO, mount_height_cm=250.0)
    ranger = FloodRanger(TRIG, ECHO, mount_height_cm=250.0, pin_factory=rig.pin_factory)
    try:
        start = time.monotonic()
        first = ranger.read()
        first_s = time.monotonic() - start
        start = time.monotonic()
        second = ranger.read()
        second_s = time.monotonic() - start
        truth = rig.truth()
        dry = compensate(first, 250.0, truth.temperature_c, truth.humidity_pct, truth.pressure_hpa)
        assert dry["depth_cm"] == pytest.approx(0.0, abs=2.0) and second.ok
        assert first_s < ranger.settle_s + 0.5  # bounded by the deadline, not gpiozero's 9-ping queue
        assert second_s < first_s
    finally:
        ranger.close()


@pytest.mark.filterwarnings("ignore::gpiozero.exc.DistanceSensorNoEcho")
@pytest.mark.parametrize("fault", ["dead_echo", "absent"])
def test_dead_echo_is_flagged_not_water(fault):
    clock = ManualClock()
    rig = EmulatedRig("storm", clock=clock, autorun=False)
    rig.attach_ranger(TRIG, ECHO, mount_height_cm=300.0)
    rig.inject("flood", fault)
    ranger = FloodRanger(TRIG, ECHO, mount_height_cm=300.0, pin_factory=rig.pin_factory, pings=3,
                         ping_interval_s=0.0, settle_s=0.4)
    try:
        m = ranger.read()
        assert m["depth_cm"] is None and m["distance_cm"] is None
        assert m.flags["depth_cm"] == Quality.FAULT | Quality.OUT_OF_RANGE
    finally:
        ranger.close()


def test_nothing_in_range_is_out_of_range(storm_rig):
    rig, _ = storm_rig
    rig.attach_ranger(TRIG, ECHO, mount_height_cm=300.0)
    rig.inject("flood", "out_of_range")
    ranger = FloodRanger(TRIG, ECHO, mount_height_cm=300.0, pin_factory=rig.pin_factory,
                         ping_interval_s=0.002)
    try:
        m = ranger.read()
        assert m["depth_cm"] is None and m.flags["depth_cm"] & Quality.OUT_OF_RANGE
        rig.clear("flood")
        wait_pings(ranger, ranger.pings)
        assert ranger.read().ok
    finally:
        ranger.close()


def test_further_than_the_street_is_clamped_to_zero_depth():
    factory = mock_factory()
    attach_sonar(factory, TRIG, ECHO, lambda: 3.2)  # 320 cm below a sensor mounted at 300 cm
    ranger = FloodRanger(TRIG, ECHO, mount_height_cm=300.0, pin_factory=factory, ping_interval_s=0.002)
    try:
        m = ranger.read()
        assert m["depth_cm"] == 0.0 and m.flags["depth_cm"] == Quality.CLAMPED
        assert m["distance_cm"] == pytest.approx(320.0, abs=0.5)
    finally:
        ranger.close()


def test_rain_within_one_tip_across_the_storm(storm_rig):
    rig, clock = storm_rig
    rig.attach_rain(REED, mm_per_tip=0.2794)
    gauge = RainGauge(REED, pin_factory=rig.pin_factory, clock=rig.scenario_clock)
    gauge.probe()
    total, peak_rate = 0.0, 0.0
    while clock.t < scenario("storm").duration_s:
        clock.advance(5.0)
        rig.pump()
        if int(clock.t) % 600 == 0:
            m = gauge.read()
            total += m["rain_mm"]
            peak_rate = max(peak_rate, m["rain_rate_mm_h"])
            assert m.ok
            assert abs(total - rig.rain_truth_mm()) <= 0.2794 + 1e-9
    total += gauge.read()["rain_mm"]
    assert abs(total - rig.rain_truth_mm()) <= 0.2794 + 1e-9
    assert rig.rain_truth_mm() > 700  # a real typhoon's worth
    assert peak_rate == pytest.approx(60.0, abs=6.0)
    assert gauge.bounces > 0  # the emulated reed bounced and we did not count it
    gauge.close()


def test_debounce_is_ours_and_counts_since_last_read_are_kept():
    clock = ManualClock()
    factory = mock_factory()
    gauge = RainGauge(REED, pin_factory=factory, clock=clock, mm_per_tip=0.5, debounce_s=0.05)
    gauge.probe()
    reed = factory.pin(REED)
    tip(reed, bounces=3)  # one tip, three bounces
    clock.advance(0.02)
    tip(reed, bounces=0)  # still inside the debounce window
    clock.advance(1.0)
    tip(reed)
    assert gauge.total_tips == 2 and gauge.bounces == 6
    assert gauge.read()["rain_mm"] == 1.0
    clock.advance(1.0)
    tip(reed)
    tip_between = gauge.read()
    assert tip_between["rain_mm"] == 0.5
    assert gauge.read()["rain_mm"] == 0.0
    gauge.close()


def test_reed_stuck_closed_and_chattering_are_flagged(storm_rig):
    rig, clock = storm_rig
    rig.attach_rain(REED)
    gauge = RainGauge(REED, pin_factory=rig.pin_factory, clock=rig.scenario_clock, stuck_after_s=60)
    gauge.probe()
    rig.inject("rain", "stuck")
    rig.pump()
    clock.advance(120.0)
    assert gauge.read().flags["rain_mm"] & Quality.STUCK
    rig.clear("rain")
    rig.inject("rain", "out_of_range")
    for _ in range(200):
        clock.advance(1.0)
        rig.pump()
    m = gauge.read()
    assert m["rain_rate_mm_h"] > 400 and m.flags["rain_rate_mm_h"] & Quality.OUT_OF_RANGE
    gauge.close()


def test_accelerated_rig_keeps_tips_countable():
    stop_at = time.monotonic() + 3.0
    rig = EmulatedRig("storm", speed=2880.0, start_s=20 * 3600.0,  # 2.4 scenario hours in 3 s,
                      clock=lambda: min(time.monotonic(), stop_at))  # then the scenario stops
    rig.attach_rain(REED)
    gauge = RainGauge(REED, pin_factory=rig.pin_factory, clock=rig.scenario_clock)
    gauge.probe()
    time.sleep(3.0)
    deadline = time.monotonic() + 10.0  # let the pump thread finish what is due
    while rig.rain.emitted < int(rig.rain_truth_mm() / 0.2794) and time.monotonic() < deadline:
        time.sleep(0.01)
    rig.close()
    assert rig.rain_truth_mm() / 0.2794 > 300  # ~150 tips per real second
    assert gauge.total_tips == rig.rain.emitted  # every emitted tip counted, none doubled
    assert abs(gauge.total_tips * 0.2794 - rig.rain_truth_mm()) <= 0.2794
    gauge.close()


def test_status_led_patterns():
    factory = mock_factory()
    led = StatusLED(LED_PIN, pin_factory=factory)
    led.show("identify")
    pin = factory.pin(LED_PIN)
    deadline = time.monotonic() + 2.0
    while len(pin.states) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(pin.states) >= 6  # blinking
    led.show("off")
    assert pin.state is False or pin.state == 0
    with pytest.raises(ValueError, match="buffering"):
        led.show("panic")
    assert set(PATTERNS) == {"ok", "buffering", "fault", "identify", "off"}
    led.close()


def test_status_led_active_low():
    factory = mock_factory()
    led = StatusLED(LED_PIN, active_high=False, pin_factory=factory)
    led.probe()
    assert factory.pin(LED_PIN).state == 1  # off = high for an active-low LED
    led.close()


def test_attaching_the_ranger_after_the_pins_are_claimed_is_explained():
    rig = EmulatedRig("calm")
    ranger = FloodRanger(TRIG, ECHO, mount_height_cm=300.0, pin_factory=rig.pin_factory)
    ranger.probe()
    try:
        with pytest.raises(ValueError, match="before FloodRanger.probe"):
            rig.attach_ranger(TRIG, ECHO, 300.0)
    finally:
        ranger.close()


def test_claimed_pin_is_a_driver_error_naming_the_pin():
    from drivers.errors import SensorNotFound

    factory = mock_factory()
    gauge = RainGauge(REED, pin_factory=factory)
    gauge.probe()
    try:
        with pytest.raises(SensorNotFound, match="GPIO17"):
            StatusLED(REED, pin_factory=factory).show("ok")
        with pytest.raises(SensorNotFound, match="GPIO17"):
            RainGauge(REED, pin_factory=factory).probe()
    finally:
        gauge.close()
