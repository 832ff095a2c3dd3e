"""What the node's channel names and units mean, in SensorThings terms.

Units map to UCUM codes (https://ucum.org); ``unitOfMeasurement.definition`` carries the code as
``ucum:<code>`` and ``symbol`` the printed symbol. Quantities (the part of a channel name after the
sensor name, e.g. ``temperature_c`` of ``weather.temperature_c``) map to an ObservedProperty.
"""

from __future__ import annotations

from typing import Any

# unit as the node sends it -> (UCUM code, name)
UNITS: dict[str, tuple[str, str]] = {
    "°C": ("Cel", "degree Celsius"),
    "%": ("%", "percent"),
    "hPa": ("hPa", "hectopascal"),
    "µg/m³": ("ug/m3", "microgram per cubic metre"),
    "cm": ("cm", "centimetre"),
    "mm": ("mm", "millimetre"),
    "mm/h": ("mm/h", "millimetre per hour"),
    "s": ("s", "second"),
    "K": ("K", "kelvin"),
    "": ("1", "dimensionless"),
}

# quantity -> (name, definition URI, description)
QUANTITIES: dict[str, tuple[str, str, str]] = {
    "temperature_c": ("Air temperature", "http://qudt.org/vocab/quantitykind/Temperature",
                      "Temperature of the air at the pole"),
    "humidity_pct": ("Relative humidity", "http://qudt.org/vocab/quantitykind/RelativeHumidity",
                     "Relative humidity of the air at the pole"),
    "pressure_hpa": ("Air pressure", "http://qudt.org/vocab/quantitykind/AtmosphericPressure",
                     "Atmospheric pressure at the pole"),
    "pm1_0_ugm3": ("PM1.0", "urn:streetnode:quantity:pm1_0_ugm3",
                   "Mass concentration of particles up to 1 µm in the air"),
    "pm2_5_ugm3": ("PM2.5", "urn:streetnode:quantity:pm2_5_ugm3",
                   "Mass concentration of particles up to 2.5 µm in the air"),
    "pm10_ugm3": ("PM10", "urn:streetnode:quantity:pm10_ugm3",
                  "Mass concentration of particles up to 10 µm in the air"),
    "depth_cm": ("Flood depth", "urn:streetnode:quantity:depth_cm",
                 "Depth of water on the road below the pole (ultrasonic ranger)"),
    "distance_cm": ("Distance to surface", "urn:streetnode:quantity:distance_cm",
                    "Distance from the ranger to the road or water surface"),
    "rain_mm": ("Precipitation amount", "urn:streetnode:quantity:rain_mm",
                "Rain since the previous reading (tipping-bucket gauge)"),
    "rain_rate_mm_h": ("Precipitation rate", "urn:streetnode:quantity:rain_rate_mm_h",
                       "Rain rate over the last minutes (tipping-bucket gauge)"),
    "cpu_temp_c": ("Node CPU temperature", "urn:streetnode:quantity:cpu_temp_c",
                   "Temperature of the node's processor"),
    "disk_used_pct": ("Node disk use", "urn:streetnode:quantity:disk_used_pct",
                      "Share of the node's SD card in use"),
    "load_1m": ("Node load", "urn:streetnode:quantity:load_1m", "One-minute load average of the node"),
    "uptime_s": ("Node uptime", "urn:streetnode:quantity:uptime_s", "Time since the node booted"),
    "throttled": ("Node throttling", "urn:streetnode:quantity:throttled",
                  "Raspberry Pi throttling state bits"),
}

# the instrument behind a quantity, for Sensor.metadata
INSTRUMENTS: dict[str, str] = {
    "temperature_c": "Bosch BME280 temperature/humidity/pressure sensor (I2C)",
    "humidity_pct": "Bosch BME280 temperature/humidity/pressure sensor (I2C)",
    "pressure_hpa": "Bosch BME280 temperature/humidity/pressure sensor (I2C)",
    "pm1_0_ugm3": "Plantower PMSA003I particulate matter sensor (I2C)",
    "pm2_5_ugm3": "Plantower PMSA003I particulate matter sensor (I2C)",
    "pm10_ugm3": "Plantower PMSA003I particulate matter sensor (I2C)",
    "depth_cm": "Ultrasonic ranger (JSN-SR04T class, GPIO) looking down at the road",
    "distance_cm": "Ultrasonic ranger (JSN-SR04T class, GPIO) looking down at the road",
    "rain_mm": "Tipping-bucket rain gauge (reed switch, GPIO)",
    "rain_rate_mm_h": "Tipping-bucket rain gauge (reed switch, GPIO)",
    "cpu_temp_c": "Node self-monitoring (Raspberry Pi)",
    "disk_used_pct": "Node self-monitoring (Raspberry Pi)",
    "load_1m": "Node self-monitoring (Raspberry Pi)",
    "uptime_s": "Node self-monitoring (Raspberry Pi)",
    "throttled": "Node self-monitoring (Raspberry Pi)",
}

OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"


def unit_of_measurement(unit: str) -> dict[str, Any]:
    code, name = UNITS.get(unit, (unit, unit))
    return {"name": name, "symbol": unit, "definition": f"ucum:{code}"}


def split_channel(channel: str) -> tuple[str, str]:
    """(sensor name, quantity) of ``weather.temperature_c``; a name without a dot is both."""
    sensor, dot, quantity = channel.partition(".")
    return (sensor, quantity) if dot else (channel, channel)


def observed_property(quantity: str) -> tuple[str, str, str]:
    return QUANTITIES.get(quantity, (quantity, f"urn:streetnode:quantity:{quantity}",
                                     f"Quantity {quantity!r} reported by the node"))
