"""Storm mode: triggers and hysteresis (the emulated storm scenario is in test_storm_scenario)."""

from __future__ import annotations

import pytest

from node.storm import StormDetector

CFG = {"enabled": True, "pressure_drop_hpa_3h": 3.0, "rain_rate_mm_h": 20.0, "flood_depth_cm": 10.0,
       "clear_after": 1800.0, "clear_ratio": 0.5}


def test_pressure_falling_fast_starts_storm_mode_after_enough_history():
    d = StormDetector(CFG)
    # 0.9 hPa per hour = 2.7 hPa / 3 h: below the threshold
    for i in range(0, 3600, 60):
        assert d.observe(i, {"pressure_hpa": 1010 - 0.9 * i / 3600}) is None
    assert d.pressure_drop_3h() == pytest.approx(2.7, abs=0.01)
    d2 = StormDetector(CFG)
    events = [d2.observe(i, {"pressure_hpa": 1010 - 2 * i / 3600}) for i in range(0, 3600, 60)]
    assert events.index(True) == 20  # needs 20 min of history before judging the trend
    assert d2.state.active and d2.state.reasons == ["pressure_drop_hpa_3h"]


@pytest.mark.parametrize(("key", "quantity", "value"), [
    ("rain_rate_mm_h", "rain_rate_mm_h", 25.0), ("flood_depth_cm", "depth_cm", 12.5)])
def test_rain_and_flood_triggers(key, quantity, value):
    d = StormDetector(CFG)
    assert d.observe(0, {quantity: value * 0.7}) is None
    assert d.observe(10, {quantity: value}) is True
    assert d.state.reasons == [key] and d.state.levels[key] == value


def test_hysteresis_needs_every_trigger_calm_for_clear_after():
    d = StormDetector(CFG)
    assert d.observe(0, {"depth_cm": 30.0, "rain_rate_mm_h": 40}) is True
    # below the threshold but above clear_ratio x threshold: stays on however long
    for t in range(60, 7200, 60):
        assert d.observe(t, {"depth_cm": 8.0, "rain_rate_mm_h": 15}) is None
    assert d.state.active
    # calm, then a relapse halfway: the clock restarts
    t = 7200
    assert d.observe(t, {"depth_cm": 2.0, "rain_rate_mm_h": 0}) is None
    assert d.observe(t + 900, {"depth_cm": 6.0, "rain_rate_mm_h": 0}) is None
    assert d.observe(t + 1000, {"depth_cm": 2.0, "rain_rate_mm_h": 0}) is None
    assert d.observe(t + 2700, {"depth_cm": 2.0, "rain_rate_mm_h": 0}) is None
    assert d.observe(t + 2800, {"depth_cm": 2.0, "rain_rate_mm_h": 0}) is False
    assert not d.state.active and d.state.reasons == []


def test_disabled_never_triggers():
    d = StormDetector({**CFG, "enabled": False})
    assert d.observe(0, {"depth_cm": 100.0}) is None and not d.state.active


def test_a_trigger_expires_when_its_sensor_stops_delivering_and_storm_mode_ends():
    """#21: the ranger stopped answering mid-storm; its last 30 cm held storm mode for 48 h."""
    d = StormDetector(CFG)
    d.stale_after_s = 300.0
    assert d.observe(0, {"depth_cm": 30.0}) is True
    events = [d.observe(t, {}) for t in range(60, 3 * 3600, 60)]  # no depth any more
    assert "flood_depth_cm" not in d.state.levels
    assert False in events and not d.state.active
    assert events.index(False) * 60 + 60 <= 300 + 60 + CFG["clear_after"]


def test_flagged_values_never_start_storm_mode():
    """A chattering rain contact reads 900 mm/h flagged OUT_OF_RANGE: the sampler hands None."""
    d = StormDetector(CFG)
    for t in range(0, 600, 10):
        assert d.observe(t, {"rain_rate_mm_h": None, "depth_cm": None}) is None
    assert not d.state.active and d.state.levels == {}


def test_forget_drops_the_level_of_a_faulted_sensor_at_once():
    d = StormDetector(CFG)
    assert d.observe(0, {"depth_cm": 30.0, "pressure_hpa": 1000.0}) is True
    d.forget({"depth_cm"})
    d.observe(10, {})
    assert "flood_depth_cm" not in d.state.levels
    assert d.tracked() == ["pressure_hpa", "rain_rate_mm_h", "depth_cm"]
