"""Hardware checks: I2C scan against the config, each sensor live, GPIO pins.

Sensors are built through the agent's registry (`node.sampler.REGISTRY`) over the
real buses and pins (under the system root) or the emulated rig, exactly as the
daemon builds them, then probed and read once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from drivers.quality import Quality
from node.diag.context import DiagContext
from node.diag.core import Result, Status, fail, ok, skip, warn
from node.diag.watch import build_sensor, watch
from node.diag.words import driver_message, quantity
from node.i18n import N_, _, number

I2C_TYPES = ("bme280", "pm25")
GPIO_TYPES = ("flood", "rain")
OTHER_BME_ADDRESS = {0x76: 0x77, 0x77: 0x76}

# texts marked for the catalogue here and translated where a check uses them: _(REMEDY_WIRING[t])
REMEDY_WIRING = {
    "bme280": N_("check the BME280's four wires (3V3, GND, SDA = GPIO2 / pin 3, SCL = GPIO3 / pin 5) and "
                 "its connector; `streetnode scan` shows what answers"),
    "pm25": N_("check the PMSA003I's cable (3V3, GND, SDA, SCL) and that its fan runs; `streetnode scan` "
               "shows what answers"),
    "flood": N_("check the echo cable / sensor face (dirt, water, insects) and the 5 V -> 3.3 V divider on "
                "the echo line"),
    "rain": N_("check the rain gauge's reed-switch cable to GPIO and ground"),
}
REMEDY_SENSOR_WIRING = N_("check the sensor's wiring")

# quantity -> (low, high) a street pole in the tropics can plausibly see
PLAUSIBLE = {
    "temperature_c": (-10.0, 60.0),
    "humidity_pct": (0.0, 100.0),
    "pressure_hpa": (870.0, 1085.0),
    "pm1_0_ugm3": (0.0, 1000.0),
    "pm2_5_ugm3": (0.0, 1000.0),
    "pm10_ugm3": (0.0, 1000.0),
}


STUCK_TEXT = {
    "bme280": N_("the same raw data for 5 conversions (STUCK)"),
    "pm25": N_("the same frame for over 2 s (STUCK): the sensor stopped measuring"),
    "rain": N_("reed contact closed for the whole check (STUCK): no tip can be counted"),
}
STUCK_REMEDY = {
    "rain": N_("free the tipping bucket (leaves, dirt) and check the reed cable for a short to ground"),
}


def _sensors(ctx: DiagContext, types: tuple[str, ...]) -> list[Mapping[str, Any]]:
    if ctx.cfg is None:
        return []
    return [s for s in ctx.cfg.sensors if s["enabled"] and s["type"] in types]


class SysrootHardware:
    """Real buses (``/dev/i2c-N`` under the system root) and gpiozero's default pins."""

    speed = 1.0
    sensor_clock = staticmethod(time.monotonic)

    def __init__(self, ctx: DiagContext) -> None:
        self.ctx = ctx

    def close(self) -> None:
        return None

    def bus(self, n: int) -> Any:
        from drivers.i2c import open_bus

        return open_bus(n, dev_dir=str(self.ctx.path("/dev")))

    @property
    def pin_factory(self) -> Any:
        return None

    def prepare(self, sensor_cfg: Mapping[str, Any]) -> None:
        return None


def hardware(ctx: DiagContext) -> Any:
    """What the daemon would use: the emulated rig or the real buses and pins."""
    return ctx.once("hardware", lambda: _build_hardware(ctx))


def _build_hardware(ctx: DiagContext) -> Any:
    if not ctx.emulate:
        return SysrootHardware(ctx)
    from node.sampler import EmulatedHardware

    return EmulatedHardware(ctx.rig())  # the rig comes wired (DiagContext.rig): never prepare() again


# ---------------------------------------------------------------- I2C scan
def scan_bus(ctx: DiagContext, n: int) -> list[Any]:
    """`drivers.scan.Found` entries of bus ``n`` (under the bus lock)."""
    from drivers.scan import scan

    with ctx.bus_lock(n):
        return scan(hardware(ctx).bus(n))


def _part(found: Any) -> str:
    names = _(" or ").join(found.part_names) if found.part_names else _("unknown part")
    if found.status == "busy":
        return _("{part}, claimed by a kernel driver").format(part=names)
    if found.status == "error":
        return _("{part}, I/O error").format(part=names)
    return names


def check_scan(ctx: DiagContext, n: int) -> Result:
    cid = f"i2c.scan.bus{n}"
    prior = ctx.prior(f"i2c.bus{n}")
    if prior and prior[0].status is Status.FAIL:
        return skip(cid, _("not scanned: I2C bus {bus} is not usable (see i2c.bus{bus})").format(bus=n))
    from drivers.errors import DriverError

    try:
        entries = scan_bus(ctx, n)
    except (DriverError, OSError) as e:
        own = getattr(e, "remedy", None)
        return fail(cid, _("scan of bus {bus} failed: {reason}").format(bus=n, reason=driver_message(e)),
                    _(own) if own else _("check the I2C wiring (a shorted SDA/SCL line stops the whole "
                                         "bus)"))
    found = {f.address: f for f in entries}
    ctx.scratch[cid] = sorted(found)
    expected = {s["address"]: s for s in _sensors(ctx, I2C_TYPES) if s["bus"] == n}
    fails, remedies, explained = [], [], set()
    for addr, s in sorted(expected.items()):
        if addr in found:
            continue
        other = OTHER_BME_ADDRESS.get(addr) if s["type"] == "bme280" else None
        if other is not None and other in found and other not in expected:
            explained.add(other)
            fails.append(_("{name} ({type}) is not at 0x{address:02x} but a {part} answers at "
                           "0x{other:02x}").format(name=s["name"], type=s["type"], address=addr,
                                                   part=_part(found[other]), other=other))
            remedies.append(_("set address = 0x{other:02x} in the [[sensors]] block '{name}' (or move the "
                              "SDO jumper so it answers at 0x{address:02x})").format(
                other=other, name=s["name"], address=addr))
        else:
            fails.append(_("{name} ({type}): nothing answers at 0x{address:02x}").format(
                name=s["name"], type=s["type"], address=addr))
            remedies.append(_(REMEDY_WIRING[s["type"]]))
    unexpected = [a for a in sorted(found) if a not in expected and a not in explained]
    answers = ", ".join(f"0x{a:02x} {_part(f)}" + (f" ({expected[a]['name']})" if a in expected else "")
                        for a, f in sorted(found.items()))
    seen = _("bus {bus} answers at: {devices}").format(bus=n, devices=answers or _("nothing"))
    if fails:
        return fail(cid, "; ".join(fails), "; ".join(dict.fromkeys(remedies)), detail=seen)
    if unexpected:
        parts = ", ".join(f"0x{a:02x} ({_part(found[a])})" for a in unexpected)
        return warn(cid, _("unexpected device(s) on bus {bus}: {devices}").format(bus=n, devices=parts),
                    _("a part not in the configuration: add it or remove it (and check for address "
                      "clashes)"), detail=seen)
    return ok(cid, seen)


# ---------------------------------------------------------------- sensors
WRONG_PART = {
    "bme280": N_("a different part answers at this address: check the part number (a BMP280 has no "
                 "humidity) and the address in the config"),
    "pm25": N_("the part at this address sends no PMSA003I frames: check the part number (a PMSA003I, the "
               "I2C model; a PMS5003/7003 only talks UART) and the address in the config, and give a "
               "sensor that just got power 30 s to start"),
}


def _remedy_for(exc: BaseException, stype: str) -> str:
    from drivers.errors import BusError, WrongChip

    own = getattr(exc, "remedy", None)
    if isinstance(exc, WrongChip):
        if stype in WRONG_PART:
            return _(WRONG_PART[stype])
        return _(own) if own else _("another part answers at this address: run `streetnode scan`")
    if isinstance(exc, BusError):
        return _("{remedy}; bus errors come from loose contacts, missing pull-ups or weak power").format(
            remedy=_(REMEDY_WIRING[stype]))
    if own:
        return _(own)
    return _(REMEDY_WIRING.get(stype, REMEDY_SENSOR_WIRING))


def _what_failed(exc: BaseException) -> str:
    """A driver error's text without its remedy in brackets (diag prints the remedy on its own line)."""
    return driver_message(exc, with_remedy=False)


def _fmt(q: str, v: float | None) -> str:
    from node.model import CHANNEL_UNITS

    unit = CHANNEL_UNITS.get(q, ("", 0.001))[0]
    name = quantity(q)
    return f"{name}=—" if v is None else f"{name}={number(v, 1)}{(' ' + unit) if unit else ''}"


def judge(name: str, stype: str, m: Mapping[str, float | None], flags: Mapping[str, int],
          cfg: Mapping[str, Any]) -> tuple[Status, list[str], str]:
    """Status, problems and remedy of one live measurement."""
    problems: list[str] = []
    status = Status.PASS
    remedy = ""
    for q, v in m.items():
        f = int(flags.get(q, 0))
        if v is None or f & Quality.FAULT:
            status = Status.FAIL
            if stype == "flood":
                no_echo = _("no echo from the flood ranger")
                if no_echo not in problems:
                    problems.append(no_echo)
            else:
                problems.append(_("{quantity}: no value").format(quantity=quantity(q)))
            remedy = _(REMEDY_WIRING[stype])
            continue
        if f & Quality.OUT_OF_RANGE and stype == "rain":
            status = Status.FAIL
            if q == "rain_rate_mm_h":
                problems.append(_("{value}: more than any rain can make (OUT_OF_RANGE)").format(
                    value=_fmt(q, v)))
            remedy = _("a chattering reed contact: check the reed switch and its cable")
            continue
        if f & Quality.OUT_OF_RANGE:
            status = Status.FAIL
            if stype == "flood":
                problems.append(_("{value} out of the sensor's range (no echo?)").format(value=_fmt(q, v)))
                remedy = _(REMEDY_WIRING[stype])
            else:
                problems.append(_("{value} out of the sensor's range").format(value=_fmt(q, v)))
                remedy = _("the sensor is failing: replace it")
            continue
        if f & Quality.STUCK:
            status = Status.FAIL
            if stype in STUCK_TEXT:
                text = _(STUCK_TEXT[stype])
            else:
                text = _("{value} does not change (STUCK)").format(value=_fmt(q, v))
            if text not in problems:
                problems.append(text)
            if stype in STUCK_REMEDY:
                remedy = remedy or _(STUCK_REMEDY[stype])
            else:
                remedy = remedy or _("power-cycle the node; if it stays stuck, replace the sensor")
            continue
        if f & Quality.CLAMPED:
            status = max(status, Status.WARN)
            problems.append(_("{value} clamped to the chip's limit").format(value=_fmt(q, v)))
            remedy = remedy or _("the sensor is at its limit: check it is not wet or in the sun")
        lo_hi = PLAUSIBLE.get(q)
        if lo_hi and not lo_hi[0] <= v <= lo_hi[1]:
            status = Status.FAIL
            problems.append(_("{value} is implausible (expected {low} to {high})").format(
                value=_fmt(q, v), low=number(lo_hi[0], 0), high=number(lo_hi[1], 0)))
            remedy = remedy or _("the sensor reads nonsense: check its supply and replace it")
        elif q == "humidity_pct" and (v <= 0.5 or v >= 99.5):
            status = max(status, Status.WARN)
            problems.append(_("humidity at {percent} %: saturated, or failed if it stays there").format(
                percent=number(v, 1)))
            remedy = remedy or _("if it stays at 0 or 100 % for hours: dry the sensor, fit a vented "
                                 "radiation shield, or replace it")
        elif q == "depth_cm" and v < -10:
            status = max(status, Status.WARN)
            problems.append(_("{value}: the road reads higher than the mount height").format(
                value=_fmt(q, v)))
            remedy = remedy or _("measure the sensor face to dry road and fix mount_height_cm (now "
                                 "{height})").format(height=cfg.get("mount_height_cm"))
    return status, problems, remedy


def check_sensor(ctx: DiagContext, name: str) -> Result:
    assert ctx.cfg is not None
    s = ctx.cfg.sensor(name)
    cid = f"sensor.{name}"
    stype = s["type"]
    if stype in I2C_TYPES:
        n = s["bus"]
        bus_prior = ctx.prior(f"i2c.bus{n}")
        if bus_prior and bus_prior[0].status is Status.FAIL:
            return skip(cid, _("not probed: I2C bus {bus} is not usable (see i2c.bus{bus})").format(bus=n))
        found = ctx.scratch.get(f"i2c.scan.bus{n}")
        if found is not None and s["address"] not in found:
            return skip(cid, _("not probed: nothing at 0x{address:02x} (see i2c.scan.bus{bus})").format(
                address=s["address"], bus=n))
    else:
        gpio = ctx.prior("gpio")
        if gpio and gpio[0].status is Status.FAIL:
            return skip(cid, _("not probed: GPIO is not usable (see gpio)"))
    from drivers.errors import DriverError

    hw = hardware(ctx)
    lock = ctx.bus_lock(s["bus"]) if stype in I2C_TYPES else contextlib.nullcontext()
    driver = None
    with lock:
        try:
            driver = build_sensor(s, hw)
            driver.probe()
            m = watch(stype, driver, hw)
        except Exception as e:  # driver errors, OSError, gpiozero's own (pin in use, no pin factory)
            held = _from_daemon(ctx, cid, name, stype) if _pin_busy(e) else None
            if held is not None:
                return held
            if isinstance(e, DriverError | OSError):
                return fail(cid, f"{stype} {name}: {_what_failed(e)}", _remedy_for(e, stype))
            return fail(cid, f"{stype} {name}: {type(e).__name__}: {e}", _gpio_remedy(e))
        finally:
            if stype == "rain" and ctx.emulate:
                ctx.rig().close()  # stop the rig's tip pump first: it races a closing gauge
            if driver is not None:
                try:
                    driver.close()
                except Exception:
                    pass
    status, problems, remedy = judge(name, stype, m, getattr(m, "flags", {}), s)
    values = ", ".join(_fmt(q, v) for q, v in m.items())
    if status is Status.PASS:
        return ok(cid, f"{stype} {name}: {values}")
    text = f"{stype} {name}: " + "; ".join(problems)
    return (fail if status is Status.FAIL else warn)(cid, text, remedy, detail=values)


def _pin_busy(exc: BaseException) -> bool:
    """gpiozero's GPIOPinInUse / lgpio's 'GPIO busy' anywhere in the exception chain."""
    seen: BaseException | None = exc
    for _depth in range(8):
        if seen is None:
            return False
        text = f"{type(seen).__name__} {seen}"
        if "InUse" in text or "busy" in text.lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def daemon_sensors(ctx: DiagContext) -> dict[str, dict[str, Any]] | None:
    """The running daemon's own view of its sensors (fresh agent state file), else None."""
    from node.agent import read_state
    from node.diag.system import STATE_FRESH_S

    state = read_state(ctx.state_dir)
    if not state or ctx.wall() - float(state.get("updated_at") or 0) > STATE_FRESH_S:
        return None
    return {s["name"]: s for s in state.get("sensors", []) if isinstance(s, dict) and "name" in s}


def _from_daemon(ctx: DiagContext, cid: str, name: str, stype: str) -> Result | None:
    """A GPIO sensor whose pins the running daemon holds: report what the daemon sees."""
    seen = (daemon_sensors(ctx) or {}).get(name)
    if seen is None:
        return None
    if seen.get("state") == "ok":
        return ok(cid, _("{type} {name}: pins held by the running daemon, which reads it fine ({reads} "
                         "reads, {faults} faults)").format(type=stype, name=name,
                                                          reads=seen.get("reads", "?"),
                                                          faults=seen.get("faults", 0)))
    return fail(cid, _("{type} {name}: the running daemon reports {state}: {error}").format(
        type=stype, name=name, state=seen.get("state"), error=seen.get("error")),
                _(REMEDY_WIRING.get(stype, REMEDY_SENSOR_WIRING)))


def _gpio_remedy(exc: BaseException) -> str:
    kind = type(exc).__name__
    if "PinFactory" in kind:
        return _("no GPIO library: install the Pi extras (pip install 'streetnode[pi]', i.e. lgpio)")
    if _pin_busy(exc):
        return _("the pin is held by another program; if the streetnode service runs, that is expected: "
                 "sudo systemctl stop streetnode for a full check, then start it again")
    return _("check that GPIO works: ls -l /dev/gpiochip*; add the service user to group gpio")


# ---------------------------------------------------------------- GPIO
def _pins(ctx: DiagContext) -> list[tuple[int, str]]:
    from node.config import gpio_pins

    return gpio_pins(ctx.cfg) if ctx.cfg is not None else []


def check_gpio(ctx: DiagContext) -> Result:
    pins = _pins(ctx)
    if not pins:
        return skip("gpio", _("no GPIO pins configured"))
    if not ctx.emulate:
        chip = ctx.path("/dev/gpiochip0")
        if not chip.exists():
            return fail("gpio", _("{path} is missing: no GPIO on this system").format(path=ctx.shown(chip)),
                        _("run on the Raspberry Pi (or use --emulate for training)"))
        user = ctx.service_user()
        if not user.can_access(chip.stat()):
            return fail("gpio", _("{path}: permission denied for user {user}").format(
                path=ctx.shown(chip), user=user.name),
                        _("add the service user to group gpio: sudo usermod -aG gpio {user}").format(
                            user=user.name))
        chosen, causes = ctx.scratch.get("pin_factory", (True, ""))
        if chosen is None:
            from node.logsetup import GPIO_REMEDY

            return fail("gpio", _("no GPIO library works here ({causes})").format(causes=causes),
                        _(GPIO_REMEDY))
    from gpiozero import DigitalInputDevice

    factory = hardware(ctx).pin_factory
    daemon = daemon_sensors(ctx)
    states, problems = [], []
    for pin, what in pins:
        dev = None
        try:
            dev = DigitalInputDevice(pin, pull_up=None, active_state=True, pin_factory=factory)
            if dev.value:
                states.append(_("GPIO{pin} ({what}) reads high").format(pin=pin, what=what))
            else:
                states.append(_("GPIO{pin} ({what}) reads low").format(pin=pin, what=what))
        except Exception as e:  # gpiozero raises many kinds; each becomes a line
            if _pin_busy(e) and daemon is not None:
                states.append(_("GPIO{pin} ({what}) held by the running daemon").format(pin=pin, what=what))
                continue
            problems.append((f"GPIO{pin} ({what}): {type(e).__name__}: {e}", _gpio_remedy(e)))  # i18n: no
        finally:
            if dev is not None:
                dev.close()
    if problems:
        return fail("gpio", "; ".join(p for p, _ in problems), problems[0][1], detail="\n".join(states))
    return ok("gpio", _("{count} pins usable: {states}").format(count=len(pins), states=", ".join(states)))
