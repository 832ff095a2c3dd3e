"""The speed of sound in the air under the ranger, and the distance it implies.

An ultrasonic ranger measures time; gpiozero's DistanceSensor turns the echo time into metres
with a fixed 343.26 m/s (dry air at 20 °C). In Hanoi's July air at 32 °C and 75 % RH sound is
~2.2 % faster, so a ranger mounted 3 m up reads the road ~6.5 cm closer: water that is not there.

The model (pure functions, tested against published values):

* dry air: ``c_dry = 331.3 * sqrt(1 + T / 273.15)`` m/s (T in °C);
* humidity: water vapour of mole fraction ``x = RH/100 * e_s(T) / p`` (``e_s`` by the Magnus
  formula, ``p`` the BME280's pressure, 1013.25 hPa without one) lowers the mean molar mass
  (18.02 vs 28.96 g/mol) and the heat-capacity ratio (vapour Cv = 3R, dry air 2.5R), so
  ``c = c_dry * sqrt((gamma_moist / 1.4) / (1 - 0.378 x))`` — +0.37 % at 20 °C and 100 % RH
  (+1.3 m/s), +0.6 % at 30 °C and 95 %: ~2 cm at a 3 m mount.

A distance gpiozero reported is corrected by ``distance * c / 343.26``.
"""

from __future__ import annotations

import math

GPIOZERO_SPEED_M_S = 343.26  # what gpiozero's DistanceSensor assumes for every echo
STANDARD_PRESSURE_HPA = 1013.25
_MOLAR_MASS_RATIO = 18.015 / 28.965  # water vapour / dry air


def saturation_vapour_pressure_hpa(temperature_c: float) -> float:
    """Magnus formula (Alduchov & Eskridge 1996) over water, hPa."""
    return 6.1094 * math.exp(17.625 * temperature_c / (temperature_c + 243.04))


def speed_of_sound_m_s(temperature_c: float, humidity_pct: float | None = None,
                       pressure_hpa: float | None = None) -> float:
    """Speed of sound in air of this temperature (and humidity, pressure), m/s."""
    dry = 331.3 * math.sqrt(1.0 + temperature_c / 273.15)
    if humidity_pct is None:
        return dry
    p = pressure_hpa if pressure_hpa is not None and pressure_hpa > 0 else STANDARD_PRESSURE_HPA
    rh = min(max(humidity_pct, 0.0), 100.0)
    x = min(rh / 100.0 * saturation_vapour_pressure_hpa(temperature_c) / p, 1.0)
    gamma_moist = (3.5 + 0.5 * x) / (2.5 + 0.5 * x)  # Cp/Cv with vapour Cv = 3R, dry air 2.5R
    molar_mass_factor = 1.0 - (1.0 - _MOLAR_MASS_RATIO) * x
    return dry * math.sqrt((gamma_moist / 1.4) / molar_mass_factor)


def corrected_distance_cm(reported_cm: float, temperature_c: float, humidity_pct: float | None = None,
                          pressure_hpa: float | None = None) -> float:
    """The distance an echo timed at gpiozero's 343.26 m/s really spans in this air."""
    return reported_cm * speed_of_sound_m_s(temperature_c, humidity_pct, pressure_hpa) / GPIOZERO_SPEED_M_S
