"""The speed of sound model against published values, and the ranger's compensation."""

from __future__ import annotations

import pytest

from drivers.acoustics import GPIOZERO_SPEED_M_S, corrected_distance_cm, speed_of_sound_m_s
from drivers.base import Measurement
from drivers.flood import compensate
from drivers.quality import Quality


@pytest.mark.parametrize(("temperature_c", "expected"), [(0.0, 331.3), (20.0, 343.2), (35.0, 351.9)])
def test_dry_air_follows_the_square_root_law(temperature_c, expected):
    assert speed_of_sound_m_s(temperature_c) == pytest.approx(expected, abs=0.1)


def test_humidity_adds_what_cramer_tables_give():
    # Cramer (1993): at 20 °C, 101.325 kPa, 0 -> 100 % RH raises c by ~0.35-0.38 %
    dry, wet = speed_of_sound_m_s(20.0, 0.0), speed_of_sound_m_s(20.0, 100.0)
    assert dry == pytest.approx(speed_of_sound_m_s(20.0))
    assert 0.0033 < wet / dry - 1 < 0.0040
    # lower pressure: more vapour by mole fraction, faster still
    assert speed_of_sound_m_s(30.0, 95.0, 975.0) > speed_of_sound_m_s(30.0, 95.0, 1013.25)


def test_gpiozero_reference_is_20_degrees_dry_air():
    assert corrected_distance_cm(300.0, 20.0) == pytest.approx(300.0, abs=0.1)
    assert pytest.approx(speed_of_sound_m_s(20.1), abs=0.1) == GPIOZERO_SPEED_M_S


def test_compensate_recomputes_depth_and_flags_it():
    raw = Measurement({"depth_cm": 6.0, "distance_cm": 294.0}, {}, sensor="flood")
    m = compensate(raw, 300.0, 32.0, 75.0, 1006.0)
    assert m["distance_cm"] == pytest.approx(294.0 * speed_of_sound_m_s(32.0, 75.0, 1006.0) / 343.26)
    assert m["depth_cm"] == pytest.approx(0.0, abs=0.6)
    assert m.flags == {"depth_cm": int(Quality.COMPENSATED), "distance_cm": int(Quality.COMPENSATED)}


def test_compensate_leaves_a_reading_without_echo_alone():
    failed = Measurement.failed(("depth_cm", "distance_cm"), int(Quality.OUT_OF_RANGE))
    assert compensate(failed, 300.0, 30.0) is failed
