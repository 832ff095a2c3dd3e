"""Words the drivers and the wire use, as a technician reads them in the terminal.

`drivers/` never imports `node/` (so never `node.i18n`): its errors carry English text. Here a
driver error's parts (sensor, address, cause, remedy) are put back together in the reader's
language: a cause is translated whole when the catalogue has it, else by the first `CAUSES`
pattern it matches (each pattern's named groups are its template's placeholders, so a
translation may reorder them), else it stays English. Quantities (``temperature_c``) keep
their names in English and in JSON; other languages show a word (``nhiệt độ``).
"""

from __future__ import annotations

import re

from node.i18n import N_, _, language

# quantity name -> the name a reader sees; the msgid is the identifier itself, so English shows it
QUANTITIES = (
    N_("temperature_c"), N_("humidity_pct"), N_("pressure_hpa"), N_("pm1_0_ugm3"), N_("pm2_5_ugm3"),
    N_("pm10_ugm3"), N_("depth_cm"), N_("distance_cm"), N_("rain_mm"), N_("rain_rate_mm_h"),
    N_("rise_cm_10min"), N_("alarm_on"), N_("cpu_temp_c"), N_("disk_used_pct"), N_("load_1m"),
    N_("uptime_s"),
)

# driver causes that are whole sentences (drivers/*.py), translated as they are
DRIVER_CAUSES = (
    N_("no answer (NACK) at this address"), N_("frame checksum mismatch (corrupted transfer)"),
    N_("calibration registers read all 0x00/0xFF"),
    N_("no conversion result (data registers hold their reset value)"),
    N_("NACK (no acknowledge)"), N_("I/O error (EIO)"),
    N_("reading chip ID"), N_("initialising"), N_("reading a conversion"), N_("reading a frame"),
)

# driver remedies (drivers/*.py), translated as they are
DRIVER_REMEDIES = (
    N_("check wiring and power; SDO to GND is 0x76, to 3V3 is 0x77; run 'streetnode scan'"),
    N_("fit a BME280 or remove humidity from this node"),
    N_("another part answers here; run 'streetnode scan'"),
    N_("the chip is damaged or not powered"), N_("power-cycle the sensor"),
    N_("enable I2C (sudo raspi-config nonint do_i2c 0, or dtparam=i2c_arm=on in "
       "/boot/firmware/config.txt) and reboot, or fix the bus number in the config"),
    N_("add the service user to group i2c: sudo usermod -aG i2c streetnode"),
    N_("check the bus number: ls /dev/i2c-*"), N_("check wiring and power; run 'streetnode scan'"),
    N_("another part answers here, or the sensor is still starting"),
    N_("check the wiring, the pull-ups and the power"),
)

# causes with parts: (pattern, template); a group named doing/kind is itself translated
CAUSES: tuple[tuple[str, str], ...] = (
    (r"(?P<doing>.+): (?P<kind>.+) \[errno (?P<code>\d+)\]", N_("{doing}: {kind} [errno {code}]")),
    (r"chip ID (?P<chip>0x[0-9a-f]+) is a BMP280 \(temperature and pressure only, no humidity\), "
     r"not a BME280 \(0x60\)",
     N_("chip ID {chip} is a BMP280 (temperature and pressure only, no humidity), not a BME280 (0x60)")),
    (r"chip ID (?P<chip>0x[0-9a-f]+), expected 0x60 \(BME280\)",
     N_("chip ID {chip}, expected 0x60 (BME280)")),
    (r"conversion not finished after (?P<seconds>[0-9.]+) s \(status busy\)",
     N_("conversion not finished after {seconds} s (status busy)")),
    (r"(?:I2C )?bus (?P<bus>\d+) busy for more than (?P<seconds>[0-9.]+) s",
     N_("bus {bus} busy for more than {seconds} s")),
    (r"I2C bus busy for more than (?P<seconds>[0-9.]+) s", N_("I2C bus busy for more than {seconds} s")),
    (r"(?P<path>/\S+) does not exist", N_("{path} does not exist")),
    (r"no permission to open (?P<path>\S+)", N_("no permission to open {path}")),
    (r"(?P<path>/\S+) is not an I2C adapter \((?P<reason>.*)\)",
     N_("{path} is not an I2C adapter ({reason})")),
    (r"not a PMSA003I frame \((?P<reason>.*)\)", N_("not a PMSA003I frame ({reason})")),
    (r"cannot use (?P<pins>GPIO\d+(?:/GPIO\d+)?): (?P<reason>.*)", N_("cannot use {pins}: {reason}")),
    (r"(?P<doing>initialising|closing): (?P<reason>.*)", N_("{doing}: {reason}")),
)
_TRANSLATED_GROUPS = ("doing", "kind")


def quantity(name: str) -> str:
    """``temperature_c`` as the reader knows it (English: the identifier, as in JSON)."""
    return _(name)


def translate_cause(cause: str) -> str:
    """A driver's cause in the reader's language (English when nothing matches)."""
    if language() == "en":
        return cause
    whole = _(cause)
    if whole != cause:
        return whole
    for pattern, template in CAUSES:
        m = re.fullmatch(pattern, cause)
        if m:
            parts = {k: (_(v) if k in _TRANSLATED_GROUPS else v) for k, v in m.groupdict().items()}
            return _(template).format(**parts)
    return cause


def driver_message(exc: BaseException, *, with_remedy: bool = True) -> str:
    """``str(exc)`` of a driver error, in the reader's language; other exceptions as they are."""
    from drivers.errors import DriverError

    if not isinstance(exc, DriverError):
        return str(exc)
    remedy = getattr(exc, "remedy", None)
    if language() == "en":
        text = str(exc)
        return text if with_remedy or not remedy else text.removesuffix(f" ({remedy})")
    who = exc.sensor or _("sensor")
    if isinstance(exc.address, int):
        head = _("{sensor} at 0x{address:02x}").format(sensor=who, address=exc.address)
    elif exc.address:
        head = _("{sensor} at {address}").format(sensor=who, address=exc.address)
    else:
        head = who
    text = f"{head}: {translate_cause(exc.cause)}"
    return f"{text} ({_(remedy)})" if with_remedy and remedy else text
