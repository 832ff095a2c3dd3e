"""The node's TOML configuration: schema, validation and the effective configuration.

Validation collects every problem at once, one line each, naming the key path
(``sensors[1].adress: unknown key; did you mean 'address'?``). A `Config`
holds plain dicts with every default filled in; durations are seconds (float),
sizes are bytes (int), I2C addresses are ints.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from node.errors import ConfigError
from node.i18n import N_, _
from node.units import format_duration, format_size, parse_duration, parse_size

DEFAULT_PATH = "/etc/streetnode/config.toml"
EXAMPLE_PATH = Path(__file__).with_name("config.example.toml")  # deploy/config.example.toml
ENV_VAR = "STREETNODE_CONFIG"
REQUIRED = object()

_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class Field:
    """One key: its kind, default and limits."""

    kind: str  # str int float bool duration size address pin path url node_id name choice table
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    secret: bool = False
    schema: dict[str, Field] | None = None  # for kind == "table"


def _f(kind: str, default: Any = None, **kw: Any) -> Field:
    return Field(kind, default, **kw)


# ---------------------------------------------------------------- schema
LOCATION = {
    "lat": _f("float", REQUIRED, lo=-90, hi=90),
    "lon": _f("float", REQUIRED, lo=-180, hi=180),
    "ward": _f("str"),
    "label": _f("str"),
}

SECTIONS: dict[str, dict[str, Field]] = {
    "node": {
        "id": _f("node_id", REQUIRED),
        "state_dir": _f("path", "/var/lib/streetnode"),
        "log_level": _f("choice", "info", choices=("debug", "info", "warning", "error")),
        "timezone": _f("str", "Asia/Ho_Chi_Minh"),  # for times a technician reads (node.i18n)
        "location": _f("table", None, schema=LOCATION),
    },
    "central": {
        "url": _f("url", None, secret=True),
        "key_file": _f("path", "/etc/streetnode/node.key"),
        "ca_bundle": _f("path", None),
        "connect_timeout": _f("duration", 5.0, lo=0.1, hi=120),
        "read_timeout": _f("duration", 30.0, lo=0.1, hi=600),
    },
    "buffer": {
        "max_size": _f("size", 1024**3, lo=1024**2),
        "max_age": _f("duration", None, lo=60),
        "overflow_readings": _f("int", 20000, lo=100, hi=1_000_000),
    },
    "upload": {
        "interval": _f("duration", 30.0, lo=1, hi=86400),
        "max_batch_readings": _f("int", 5000, lo=10, hi=100_000),
        "max_batch_bytes": _f("size", 512 * 1024, lo=4096, hi=64 * 1024**2),
        "live_readings": _f("int", 500, lo=1, hi=100_000),
        "backoff_initial": _f("duration", 5.0, lo=0.1, hi=3600),
        "backoff_max": _f("duration", 600.0, lo=1, hi=86400),
    },
    "storm": {
        "enabled": _f("bool", True),
        "pressure_drop_hpa_3h": _f("float", 3.0, lo=0.1, hi=100),
        "rain_rate_mm_h": _f("float", 20.0, lo=0.1, hi=1000),
        "flood_depth_cm": _f("float", 10.0, lo=0.1, hi=1000),
        "interval": _f("duration", 5.0, lo=0.1, hi=3600),
        "upload_interval": _f("duration", 10.0, lo=0.1, hi=3600),
        "clear_after": _f("duration", 1800.0, lo=0, hi=86400),
        "clear_ratio": _f("float", 0.5, lo=0.0, hi=1.0),
    },
    "status_led": {
        "pin": _f("pin", None),
        "active_high": _f("bool", True),
    },
    "emulation": {
        "enabled": _f("bool", False),
        "scenario": _f("str", "calm"),
        "speed": _f("float", 1.0, lo=0.01, hi=100000),
        "start": _f("duration", 0.0, lo=0, hi=10 * 86400),  # scenario time to start at ("18h")
    },
    "clock": {  # a clock claiming NTP sync further than suspect_s from the central's is not trusted
        "suspect_s": _f("duration", 120.0, lo=5, hi=30 * 86400),
    },
    "fleet": {  # configuration from the central (docs/fleet.md); local only
        "enabled": _f("bool", True),
        "health_window": _f("duration", 300.0, lo=1, hi=86400),
    },
}

_SENSOR_COMMON = {
    "type": _f("str", REQUIRED),
    "name": _f("name", REQUIRED),
    "interval": _f("duration", 10.0, lo=0.1, hi=86400),
    "enabled": _f("bool", True),
}

SENSOR_TYPES: dict[str, dict[str, Field]] = {
    "bme280": {
        "bus": _f("int", 1, lo=0, hi=255),
        "address": _f("address", 0x76),
        "oversampling": _f("choice", 1, choices=(1, 2, 4, 8, 16)),
    },
    "pm25": {
        "bus": _f("int", 1, lo=0, hi=255),
        "address": _f("address", 0x12),
    },
    "flood": {
        "trigger_pin": _f("pin", REQUIRED),
        "echo_pin": _f("pin", REQUIRED),
        "mount_height_cm": _f("float", REQUIRED, lo=10, hi=1000),
        "max_distance_cm": _f("float", 450.0, lo=20, hi=1000),
        "min_distance_cm": _f("float", 2.0, lo=0, hi=100),  # the ranger's blind zone (JSN-SR04T ~20)
        "pings": _f("int", 5, lo=1, hi=31),
        "compensate": _f("bool", True),  # speed of sound from the air sensor's reading of the cycle
        "air_sensor": _f("name", None),  # a bme280 sensor's name; default: the first bme280
        "spike_cm": _f("float", 15.0, lo=1, hi=1000),
        "rising_cm_10min": _f("float", 0.5, lo=0.01, hi=1000),  # then sample at storm.interval
    },
    "rain": {
        "pin": _f("pin", REQUIRED),
        "mm_per_tip": _f("float", 0.2794, lo=0.01, hi=10),
        "debounce": _f("duration", 0.05, lo=0.0, hi=2.0),
    },
    "health": {
        "interval": _f("duration", 60.0, lo=1, hi=86400),
    },
}


ALARM = {
    "name": _f("name", REQUIRED),
    "pin": _f("pin", REQUIRED),
    "active_high": _f("bool", True),
    "channel": _f("str", REQUIRED),  # "<sensor>.<quantity>", e.g. "flood.depth_cm"
    "on_at": _f("float", REQUIRED, lo=-1e6, hi=1e6),
    "on_readings": _f("int", 2, lo=1, hi=100),
    "off_below": _f("float", REQUIRED, lo=-1e6, hi=1e6),
    "off_after": _f("duration", 600.0, lo=0, hi=86400),
}
# quantities an alarm can watch, per sensor type
ALARM_QUANTITIES = {
    "bme280": ("temperature_c", "humidity_pct", "pressure_hpa"),
    "pm25": ("pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3"),
    "flood": ("depth_cm", "distance_cm", "rise_cm_10min"),
    "rain": ("rain_mm", "rain_rate_mm_h"),
}


@dataclass
class Config:
    """The effective configuration: every section a dict with defaults filled in."""

    node: dict[str, Any]
    central: dict[str, Any]
    sensors: list[dict[str, Any]]
    buffer: dict[str, Any]
    upload: dict[str, Any]
    storm: dict[str, Any]
    status_led: dict[str, Any]
    emulation: dict[str, Any]
    fleet: dict[str, Any] = field(default_factory=lambda: {"enabled": True, "health_window": 300.0})
    clock: dict[str, Any] = field(default_factory=lambda: {"suspect_s": 120.0})
    source: str = field(default="<memory>")
    alarms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return Path(self.node["state_dir"])

    def sensor(self, name: str) -> dict[str, Any]:
        for s in self.sensors:
            if s["name"] == name:
                return s
        raise KeyError(name)


# ---------------------------------------------------------------- value checks
def _expect(kind: str, f: Field) -> str:
    """What a key of this kind must hold, as a whole phrase (each range its own message)."""
    if kind in ("int", "float"):
        return _numeric(kind, f)
    if kind == "duration":
        return _drange(f)
    if kind == "size":
        return _srange(f)
    if kind == "choice":
        return _("one of {choices}").format(choices=", ".join(repr(c) for c in f.choices))
    return {
        "str": _("a string"),
        "bool": _("true or false"),
        "address": _("an I2C address from 0x03 to 0x77, as \"0x76\" or an integer"),
        "pin": _("a BCM GPIO number from 0 to 27"),
        "path": _("a file system path (string)"),
        "url": _("an http:// or https:// URL"),
        "node_id": _("1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
        "name": _("1-32 lowercase letters, digits or '_', starting with a letter"),
        "table": _("a table"),
    }[kind]


def _numeric(kind: str, f: Field) -> str:
    low, high = f"{f.lo:g}" if f.lo is not None else "", f"{f.hi:g}" if f.hi is not None else ""
    if kind == "int":
        if f.lo is not None and f.hi is not None:
            return _("an integer from {low} to {high}").format(low=low, high=high)
        if f.lo is not None:
            return _("an integer of at least {low}").format(low=low)
        return _("an integer")
    if f.lo is not None and f.hi is not None:
        return _("a number from {low} to {high}").format(low=low, high=high)
    if f.lo is not None:
        return _("a number of at least {low}").format(low=low)
    return _("a number")


def _drange(f: Field) -> str:
    if f.lo is not None and f.hi is not None:
        return _('a duration such as "10s", "5m" or "2h" from {low} to {high}').format(
            low=format_duration(f.lo), high=format_duration(f.hi))
    if f.lo is not None:
        return _('a duration such as "10s", "5m" or "2h" of at least {low}').format(
            low=format_duration(f.lo))
    return _('a duration such as "10s", "5m" or "2h"')


def _srange(f: Field) -> str:
    if f.lo is not None:
        return _('a size such as "256MiB" or "1GiB" of at least {low}').format(low=format_size(int(f.lo)))
    return _('a size such as "256MiB" or "1GiB"')


def _in_range(v: float, f: Field) -> bool:
    return (f.lo is None or v >= f.lo) and (f.hi is None or v <= f.hi)


def _convert(value: Any, f: Field) -> Any:
    """The typed value, or raise ValueError (message is filled in by the caller)."""
    k = f.kind
    if k in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise ValueError
        return value
    if k == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not _in_range(value, f):
            raise ValueError
        return value
    if k == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not _in_range(value, f):
            raise ValueError
        return float(value)
    if k == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if k == "duration":
        v = parse_duration(value)
        if not _in_range(v, f):
            raise ValueError
        return v
    if k == "size":
        v = parse_size(value)
        if not _in_range(v, f):
            raise ValueError
        return v
    if k == "address":
        if isinstance(value, str) and re.fullmatch(r"0[xX][0-9a-fA-F]{1,2}", value):
            value = int(value, 16)
        if isinstance(value, bool) or not isinstance(value, int) or not 0x03 <= value <= 0x77:
            raise ValueError
        return value
    if k == "pin":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 27:
            raise ValueError
        return value
    if k == "url":
        if not isinstance(value, str):
            raise ValueError
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError
        return value.rstrip("/")
    if k == "node_id":
        if not isinstance(value, str) or not _NODE_ID_RE.match(value):
            raise ValueError
        return value
    if k == "name":
        if not isinstance(value, str) or not _NAME_RE.match(value):
            raise ValueError
        return value
    if k == "choice":
        if isinstance(value, bool) or value not in f.choices:
            raise ValueError
        return value
    raise AssertionError(f"unknown field kind {k}")


def check_value(value: Any, f: Field, where: str) -> tuple[Any, str | None]:
    """``(typed value, None)`` or ``(None, problem)``, the problem worded as `validate` words it."""
    try:
        return _convert(value, f), None
    except ValueError:
        return None, f"{where}: expected {_expect(f.kind, f)}, got {_describe(value)}"


def _close_matches(word: str, choices: list[str], n: int, cutoff: float) -> list[str]:
    import difflib  # only for a config with a mistake in it: not in every daemon's memory

    return difflib.get_close_matches(word, choices, n=n, cutoff=cutoff)


def unknown_key(key: str, known: list[str], where: str, what: str = "key") -> str:
    """The problem line for a key (or section) that is not in ``known``, as `validate` words it."""
    hint = _close_matches(key, known, n=1, cutoff=0.6)
    more = f"; did you mean '{hint[0]}'?" if hint else f"; known {what}s: {', '.join(known)}"
    return f"{where}: unknown {what}{more}"


def _describe(value: Any) -> str:
    text = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_table(
    raw: Any, schema: dict[str, Field], path: str, problems: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(raw, dict):
        problems.append(_("{key}: expected a table, got {value}").format(key=path, value=_describe(raw)))
        raw = {}
    for key in raw:
        if key not in schema:
            hint = _close_matches(key, list(schema), n=1, cutoff=0.6)
            if hint:
                problems.append(_("{key}: unknown key; did you mean '{hint}'?").format(
                    key=f"{path}.{key}", hint=hint[0]))
            else:
                problems.append(_("{key}: unknown key; known keys: {known}").format(
                    key=f"{path}.{key}", known=", ".join(schema)))
    for key, f in schema.items():
        where = f"{path}.{key}"
        if key not in raw:
            if f.default is REQUIRED:
                problems.append(_("{key}: missing required key ({expected})").format(
                    key=where, expected=_expect(f.kind, f)))
            out[key] = None if f.default is REQUIRED else f.default
            continue
        if f.kind == "table":
            out[key] = _check_table(raw[key], f.schema or {}, where, problems)
            continue
        try:
            out[key] = _convert(raw[key], f)
        except ValueError:
            problems.append(_("{key}: expected {expected}, got {value}").format(
                key=where, expected=_expect(f.kind, f), value=_describe(raw[key])))
            out[key] = None
    return out


def _check_sensors(raw: Any, problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.append(_("sensors: expected an array of tables ([[sensors]])"))
        return []
    sensors: list[dict[str, Any]] = []
    seen_names: dict[str, int] = {}
    pins: dict[int, str] = {}
    for i, entry in enumerate(raw):
        path = f"sensors[{i}]"
        if not isinstance(entry, dict):
            problems.append(_("{key}: expected a table").format(key=path))
            continue
        stype = entry.get("type")
        if stype not in SENSOR_TYPES:
            hint = _close_matches(str(stype), list(SENSOR_TYPES), n=1, cutoff=0.6)
            expected = ", ".join(repr(t) for t in SENSOR_TYPES)
            if stype is None:
                problems.append(_("{key}: missing required key (one of {expected})").format(
                    key=f"{path}.type", expected=expected))
            elif hint:
                problems.append(_("{key}: unknown sensor type {type!r}; did you mean '{hint}'? (one of "
                                  "{expected})").format(key=f"{path}.type", type=stype, hint=hint[0],
                                                        expected=expected))
            else:
                problems.append(_("{key}: unknown sensor type {type!r} (one of {expected})").format(
                    key=f"{path}.type", type=stype, expected=expected))
            continue
        schema = {**_SENSOR_COMMON, **SENSOR_TYPES[stype]}
        sensor = _check_table(entry, schema, path, problems)
        name = sensor.get("name")
        if name is not None:
            if name in seen_names:
                problems.append(_("{key}: duplicate sensor name {name!r} (also {other})").format(
                    key=f"{path}.name", name=name, other=f"sensors[{seen_names[name]}].name"))
            else:
                seen_names[name] = i
        for key, f in schema.items():
            pin = sensor.get(key)
            if f.kind == "pin" and pin is not None:
                if pin in pins:
                    problems.append(_("{key}: GPIO {pin} is already used by {other}").format(
                        key=f"{path}.{key}", pin=pin, other=pins[pin]))
                else:
                    pins[pin] = f"{path}.{key}"
        sensors.append(sensor)
    return sensors


def _check_alarms(raw: Any, sensors: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.append(_("alarms: expected an array of tables ([[alarms]])"))
        return []
    by_name = {s["name"]: s for s in sensors if s.get("name")}
    alarms: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for i, entry in enumerate(raw):
        path = f"alarms[{i}]"
        alarm = _check_table(entry, ALARM, path, problems)
        name = alarm.get("name")
        if name is not None and name in by_name:
            problems.append(_("{key}: {name!r} is also a sensor's name; name the alarm apart").format(
                key=f"{path}.name", name=name))
        elif name is not None and name in names:
            problems.append(_("{key}: duplicate alarm name {name!r} (also {other})").format(
                key=f"{path}.name", name=name, other=f"alarms[{names[name]}].name"))
        elif name is not None:
            names[name] = i
        channel = alarm.get("channel")
        if channel is not None:
            sensor_name, _dot, q = channel.partition(".")
            sensor = by_name.get(sensor_name)
            allowed = ALARM_QUANTITIES.get(sensor["type"], ()) if sensor else ()
            if sensor is None:
                problems.append(_("{key}: no sensor named {name!r} (expected \"<sensor>.<quantity>\" of a "
                                  "[[sensors]] entry, e.g. \"flood.depth_cm\")").format(
                    key=f"{path}.channel", name=sensor_name))
            elif q not in allowed:
                problems.append(_("{key}: {type} sensor {name!r} has no quantity {quantity!r} (one of "
                                  "{allowed})").format(key=f"{path}.channel", type=sensor["type"],
                                                       name=sensor_name, quantity=q,
                                                       allowed=", ".join(allowed)
                                                       or _("none an alarm can watch")))
        on_at, off_below = alarm.get("on_at"), alarm.get("off_below")
        if on_at is not None and off_below is not None and off_below > on_at:
            problems.append(_("{key}: {value} is above {other} ({limit}); expected at most on_at "
                              "(hysteresis)").format(key=f"{path}.off_below", value=f"{off_below:g}",
                                                     other=f"{path}.on_at", limit=f"{on_at:g}"))
        alarms.append(alarm)
    return alarms


def validate(raw: dict[str, Any], source: str = "<memory>") -> Config:
    """Check a parsed TOML document; raise `ConfigError` listing every problem."""
    problems: list[str] = []
    known = [*SECTIONS, "sensors", "alarms"]
    for key in raw:
        if key not in known:
            hint = _close_matches(key, known, n=1, cutoff=0.6)
            if hint:
                problems.append(_("{key}: unknown section; did you mean '{hint}'?").format(key=key,
                                                                                          hint=hint[0]))
            else:
                problems.append(_("{key}: unknown section; known sections: {known}").format(
                    key=key, known=", ".join(known)))
    sections = {name: _check_table(raw.get(name, {}), schema, name, problems)
                for name, schema in SECTIONS.items()}
    sensors = _check_sensors(raw.get("sensors", []), problems)
    alarms = _check_alarms(raw.get("alarms", []), sensors, problems)
    bme280s = {s["name"] for s in sensors if s["type"] == "bme280"}
    for i, s in enumerate(sensors):
        air = s.get("air_sensor")
        if s["type"] == "flood" and air is not None and air not in bme280s:
            problems.append(_("{key}: no bme280 sensor named {name!r} (bme280 sensors: {known})").format(
                key=f"sensors[{i}].air_sensor", name=air, known=", ".join(sorted(bme280s)) or _("none")))
    led_pin = sections["status_led"].get("pin")
    if led_pin is not None:
        for i, s in enumerate(sensors):
            for key in ("pin", "trigger_pin", "echo_pin"):
                if s.get(key) == led_pin:
                    problems.append(_("{key}: GPIO {pin} is already used by {other}").format(
                        key="status_led.pin", pin=led_pin, other=f"sensors[{i}].{key}"))
    bundle = sections["central"].get("ca_bundle")
    if bundle is not None and not os.path.isfile(bundle):  # else every upload fails on an OSError
        problems.append(_("central.ca_bundle: expected a readable CA bundle file, {path!r} does not "
                          "exist").format(path=bundle))
    up = sections["upload"]
    if up.get("backoff_initial") and up.get("backoff_max") and up["backoff_initial"] > up["backoff_max"]:
        problems.append(_("upload.backoff_initial: expected at most upload.backoff_max"))
    tz = sections["node"].get("timezone")
    if tz is not None:
        from node.i18n import zone

        try:
            zone(tz)
        except ValueError:
            problems.append(_("node.timezone: expected a time zone name such as \"Asia/Ho_Chi_Minh\", got "
                              "{value}").format(value=_describe(tz)))
    problems += cross_checks(sensors, sections["status_led"], alarms)
    if problems:
        raise ConfigError(problems)
    return Config(sensors=sensors, source=source, alarms=alarms, **sections)


# BCM pins of I2C bus 1 (SDA, SCL): the Pi has fixed 1.8 kOhm pull-ups on them
I2C1_PINS = {2: "SDA", 3: "SCL"}
_PIN_KEYS = ("pin", "trigger_pin", "echo_pin")


def cross_checks(sensors: list[dict[str, Any]], status_led: dict[str, Any],
                 alarms: list[dict[str, Any]] | None = None) -> list[str]:
    """Problems between keys that are each valid alone; every line names both keys."""
    problems: list[str] = []
    addresses: dict[tuple[int, int], str] = {}
    i2c_user = None
    for i, s in enumerate(sensors):
        bus, address = s.get("bus"), s.get("address")
        if s["type"] in ("bme280", "pm25") and bus is not None and address is not None:
            here = f"sensors[{i}].address"
            if (bus, address) in addresses:
                problems.append(_("{key}: I2C bus {bus} address 0x{address:02x} is already used by {other}; "
                                  "two parts cannot share an address").format(
                    key=here, bus=bus, address=address, other=addresses[bus, address]))
            else:
                addresses[bus, address] = here
            if bus == 1 and i2c_user is None:
                i2c_user = f"sensors[{i}].bus"
        if s["type"] == "flood":
            problems += _ranger_checks(i, s)
    pins = [(f"sensors[{i}].{key}", s.get(key)) for i, s in enumerate(sensors) for key in _PIN_KEYS]
    pins.append(("status_led.pin", status_led.get("pin")))
    used = {pin: where for where, pin in pins if pin is not None}
    for i, alarm in enumerate(alarms or []):
        pin, where = alarm.get("pin"), f"alarms[{i}].pin"
        if pin is not None and pin in used:
            problems.append(_("{key}: GPIO {pin} is already used by {other}").format(
                key=where, pin=pin, other=used[pin]))
        elif pin is not None:
            used[pin] = where
        pins.append((where, pin))
    for where, pin in pins:
        if pin in I2C1_PINS:
            if i2c_user:
                problems.append(_("{key}: GPIO {pin} is {line} of the I2C bus of {other} (fixed pull-up on "
                                  "the Pi); use another GPIO").format(key=where, pin=pin,
                                                                     line=I2C1_PINS[pin], other=i2c_user))
            else:
                problems.append(_("{key}: GPIO {pin} is {line} of I2C bus 1, the sensors' bus (fixed "
                                  "pull-up on the Pi); use another GPIO").format(key=where, pin=pin,
                                                                                line=I2C1_PINS[pin]))
    return problems


def _ranger_checks(i: int, s: dict[str, Any]) -> list[str]:
    here = f"sensors[{i}]"
    height, top, blind = s.get("mount_height_cm"), s.get("max_distance_cm"), s.get("min_distance_cm")
    problems = []
    if height is not None and top is not None and top < height:
        problems.append(_("{key}: {value} is below {other} ({limit}): the ranger could never see the dry "
                          "road").format(key=f"{here}.max_distance_cm", value=f"{top:g}",
                                         other=f"{here}.mount_height_cm", limit=f"{height:g}"))
    if blind is not None and top is not None and blind >= top:
        problems.append(_("{key}: {value} is not below {other} ({limit})").format(
            key=f"{here}.min_distance_cm", value=f"{blind:g}", other=f"{here}.max_distance_cm",
            limit=f"{top:g}"))
    elif blind is not None and height is not None and blind >= height:
        problems.append(_("{key}: {value} is not below {other} ({limit})").format(
            key=f"{here}.min_distance_cm", value=f"{blind:g}", other=f"{here}.mount_height_cm",
            limit=f"{height:g}"))
    return problems


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    """--config PATH, else $STREETNODE_CONFIG, else /etc/streetnode/config.toml."""
    if path:
        return Path(path)
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the configuration file; raise `ConfigError` on any problem."""
    raw, source = load_raw(path)
    return validate(raw, source=source)


def load_raw(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], str]:
    """The configuration file parsed but not validated, and its path (node/remote_keys overlays the
    central's layers on it); raise `ConfigError` when it cannot be read or parsed."""
    p = resolve_path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(_("{path}: configuration file not found (use --config PATH or ${env})").format(
            path=p, env=ENV_VAR)) from None
    except OSError as e:
        raise ConfigError(_("{path}: cannot read configuration file: {reason}").format(
            path=p, reason=e.strerror)) from None
    try:
        raw = tomllib.loads(_utf8(p, data))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(_("{path}: not valid TOML: {reason}").format(path=p, reason=e)) from None
    return raw, str(p)


def _utf8(p: Path, data: bytes) -> str:
    """The file's text; a non-UTF-8 byte is one line naming the file, the byte and its offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(_("{path}: not UTF-8 text: byte 0x{byte:02x} at offset {offset} (line {line}); "
                            "save the file as UTF-8").format(path=p, byte=data[e.start], offset=e.start,
                                                             line=line)) from None


def user_state_dir() -> Path:
    """Where a built-in emulated node keeps its state: $XDG_STATE_HOME/streetnode/emulated."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "streetnode" / "emulated"


# also the source a technician reads: translated where shown, _(BUILTIN_EMULATED)
BUILTIN_EMULATED = N_("<built-in emulated rig: config.example.toml with [emulation] enabled>")


def builtin_emulated() -> Config:
    """The example node on emulated hardware: no central (buffer only), state in the user's home."""
    raw = tomllib.loads(EXAMPLE_PATH.read_text(encoding="utf-8"))
    raw.setdefault("emulation", {})["enabled"] = True
    raw.setdefault("central", {}).pop("url", None)
    raw["node"]["state_dir"] = str(user_state_dir())
    return validate(raw, source=BUILTIN_EMULATED)


def load_or_builtin(path: str | os.PathLike[str] | None, *, emulate: bool) -> Config:
    """`load`; with ``emulate`` and no config named anywhere and none installed: `builtin_emulated`."""
    if emulate and not path and not os.environ.get(ENV_VAR) and not Path(DEFAULT_PATH).exists():
        return builtin_emulated()
    return load(path)


# ---------------------------------------------------------------- effective config as TOML
def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password or parts.username:
        netloc = f"***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    if parts.query:
        parts = parts._replace(query="***")
    return urlunsplit(parts)


def _toml_value(value: Any, f: Field) -> str:
    if f.kind == "duration":
        return f'"{format_duration(value)}"'
    if f.kind == "size":
        return f'"{format_size(value)}"'
    if f.kind == "address":
        return f"0x{value:02x}"
    if f.kind == "url" and f.secret:
        value = _redact_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _toml_table(values: dict[str, Any], schema: dict[str, Field]) -> tuple[list[str], list[str]]:
    lines, subtables = [], []
    for key, f in schema.items():
        v = values.get(key)
        if f.kind == "table":
            if v:
                subtables.append(key)
            continue
        if v is None:
            lines.append(f"# {key} = (not set)")  # i18n: no (TOML)
        else:
            lines.append(f"{key} = {_toml_value(v, f)}")
    return lines, subtables


def to_toml(cfg: Config) -> str:
    """The effective configuration as TOML, defaults filled in, secrets redacted."""
    out: list[str] = [f"# effective configuration from {cfg.source}"]
    for name, schema in SECTIONS.items():
        values = getattr(cfg, name)
        lines, subtables = _toml_table(values, schema)
        out += ["", f"[{name}]", *lines]
        for sub in subtables:
            sub_lines, _subs = _toml_table(values[sub], schema[sub].schema or {})
            out += ["", f"[{name}.{sub}]", *sub_lines]
    for s in cfg.sensors:
        schema = {**_SENSOR_COMMON, **SENSOR_TYPES[s["type"]]}
        lines, _subs = _toml_table(s, schema)
        out += ["", "[[sensors]]", *lines]
    for alarm in cfg.alarms:
        lines, _subs = _toml_table(alarm, ALARM)
        out += ["", "[[alarms]]", *lines]
    return "\n".join(out) + "\n"


def config_hash(cfg: Config) -> str:
    """First 16 hex digits of SHA-256 over the effective configuration (comments and layout of
    the file do not count, defaults do), as `streetnode config check` prints it minus its header."""
    import hashlib

    text = to_toml(cfg).split("\n", 1)[1]
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def gpio_pins(cfg: Config) -> list[tuple[int, str]]:
    """Every GPIO pin the configuration uses, with its key: ``[(23, "flood.trigger_pin"), ...]``."""
    pins = [(s[key], f"{s['name']}.{key}") for s in cfg.sensors if s["enabled"]
            for key in _PIN_KEYS if s.get(key) is not None]
    if cfg.status_led["pin"] is not None:
        pins.append((cfg.status_led["pin"], "status_led.pin"))
    pins += [(a["pin"], f"{a['name']}.pin") for a in cfg.alarms]
    return pins


def sensor_schema(stype: str) -> dict[str, Field]:
    """All keys a sensor of this type accepts (common keys included)."""
    return {**_SENSOR_COMMON, **SENSOR_TYPES[stype]}

