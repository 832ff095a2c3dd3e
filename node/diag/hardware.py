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

I2C_TYPES = ("bme280", "pm25")
GPIO_TYPES = ("flood", "rain")
OTHER_BME_ADDRESS = {0x76: 0x77, 0x77: 0x76}

REMEDY_WIRING = {
    "bme280": "check the BME280's four wires (3V3, GND, SDA = GPIO2 / pin 3, SCL = GPIO3 / pin 5) and its "
              "connector; `streetnode scan` shows what answers",
    "pm25": "check the PMSA003I's cable (3V3, GND, SDA, SCL) and that its fan runs; `streetnode scan` shows "
            "what answers",
    "flood": "check the echo cable / sensor face (dirt, water, insects) and the 5 V -> 3.3 V divider on the "
             "echo line",
    "rain": "check the rain gauge's reed-switch cable to GPIO and ground",
}

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
    "bme280": "the same raw data for 5 conversions (STUCK)",
    "pm25": "the same frame for over 2 s (STUCK): the sensor stopped measuring",
    "rain": "reed contact closed for the whole check (STUCK): no tip can be counted",
}
STUCK_REMEDY = {
    "rain": "free the tipping bucket (leaves, dirt) and check the reed cable for a short to ground",
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
    names = " or ".join(found.part_names) if found.part_names else "unknown part"
    return names + {"ok": "", "busy": ", claimed by a kernel driver", "error": ", I/O error"}[found.status]


def check_scan(ctx: DiagContext, n: int) -> Result:
    cid = f"i2c.scan.bus{n}"
    prior = ctx.prior(f"i2c.bus{n}")
    if prior and prior[0].status is Status.FAIL:
        return skip(cid, f"not scanned: I2C bus {n} is not usable (see i2c.bus{n})")
    from drivers.errors import DriverError

    try:
        entries = scan_bus(ctx, n)
    except (DriverError, OSError) as e:
        return fail(cid, f"scan of bus {n} failed: {e}", getattr(e, "remedy", None) or
                    "check the I2C wiring (a shorted SDA/SCL line stops the whole bus)")
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
            fails.append(f"{s['name']} ({s['type']}) is not at 0x{addr:02x} but a {_part(found[other])} "
                         f"answers at 0x{other:02x}")
            remedies.append(f"set address = 0x{other:02x} in the [[sensors]] block '{s['name']}' "
                            f"(or move the SDO jumper so it answers at 0x{addr:02x})")
        else:
            fails.append(f"{s['name']} ({s['type']}): nothing answers at 0x{addr:02x}")
            remedies.append(REMEDY_WIRING[s["type"]])
    unexpected = [a for a in sorted(found) if a not in expected and a not in explained]
    seen = f"bus {n} answers at: " + (", ".join(
        f"0x{a:02x} {_part(f)}" + (f" ({expected[a]['name']})" if a in expected else "")
        for a, f in sorted(found.items())) or "nothing")
    if fails:
        return fail(cid, "; ".join(fails), "; ".join(dict.fromkeys(remedies)), detail=seen)
    if unexpected:
        parts = ", ".join(f"0x{a:02x} ({_part(found[a])})" for a in unexpected)
        return warn(cid, f"unexpected device(s) on bus {n}: {parts}",
                    "a part not in the configuration: add it or remove it (and check for address clashes)",
                    detail=seen)
    return ok(cid, seen)


# ---------------------------------------------------------------- sensors
WRONG_PART = {
    "bme280": "a different part answers at this address: check the part number (a BMP280 has no "
              "humidity) and the address in the config",
    "pm25": "the part at this address sends no PMSA003I frames: check the part number (a PMSA003I, the "
            "I2C model; a PMS5003/7003 only talks UART) and the address in the config, and give a sensor "
            "that just got power 30 s to start",
}


def _remedy_for(exc: BaseException, stype: str) -> str:
    from drivers.errors import BusError, WrongChip

    own = getattr(exc, "remedy", None)
    if isinstance(exc, WrongChip):
        return WRONG_PART.get(stype, own or "another part answers at this address: run `streetnode scan`")
    if isinstance(exc, BusError):
        return REMEDY_WIRING[stype] + "; bus errors come from loose contacts, missing pull-ups or weak power"
    return own or REMEDY_WIRING.get(stype, "check the sensor's wiring")


def _what_failed(exc: BaseException) -> str:
    """A driver error's text without its remedy in brackets (diag prints the remedy on its own line)."""
    text = str(exc)
    remedy = getattr(exc, "remedy", None)
    return text.removesuffix(f" ({remedy})") if remedy else text


def _fmt(q: str, v: float | None) -> str:
    from node.model import CHANNEL_UNITS

    unit = CHANNEL_UNITS.get(q, ("", 0.001))[0]
    return f"{q}=—" if v is None else f"{q}={v:.1f}{(' ' + unit) if unit else ''}"


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
                if "no echo from the flood ranger" not in problems:
                    problems.append("no echo from the flood ranger")
            else:
                problems.append(f"{q}: no value")
            remedy = REMEDY_WIRING[stype]
            continue
        if f & Quality.OUT_OF_RANGE and stype == "rain":
            status = Status.FAIL
            if q == "rain_rate_mm_h":
                problems.append(f"{_fmt(q, v)}: more than any rain can make (OUT_OF_RANGE)")
            remedy = "a chattering reed contact: check the reed switch and its cable"
            continue
        if f & Quality.OUT_OF_RANGE:
            status = Status.FAIL
            problems.append(f"{_fmt(q, v)} out of the sensor's range" +
                            (" (no echo?)" if stype == "flood" else ""))
            remedy = REMEDY_WIRING[stype] if stype == "flood" else "the sensor is failing: replace it"
            continue
        if f & Quality.STUCK:
            status = Status.FAIL
            text = STUCK_TEXT.get(stype, f"{_fmt(q, v)} does not change (STUCK)")
            if text not in problems:
                problems.append(text)
            remedy = remedy or STUCK_REMEDY.get(stype, "power-cycle the node; if it stays stuck, replace "
                                                "the sensor")
            continue
        if f & Quality.CLAMPED:
            status = max(status, Status.WARN)
            problems.append(f"{_fmt(q, v)} clamped to the chip's limit")
            remedy = remedy or "the sensor is at its limit: check it is not wet or in the sun"
        lo_hi = PLAUSIBLE.get(q)
        if lo_hi and not lo_hi[0] <= v <= lo_hi[1]:
            status = Status.FAIL
            problems.append(f"{_fmt(q, v)} is implausible (expected {lo_hi[0]:g} to {lo_hi[1]:g})")
            remedy = remedy or "the sensor reads nonsense: check its supply and replace it"
        elif q == "humidity_pct" and (v <= 0.5 or v >= 99.5):
            status = max(status, Status.WARN)
            problems.append(f"humidity at {v:.1f} %: saturated, or failed if it stays there")
            remedy = remedy or ("if it stays at 0 or 100 % for hours: dry the sensor, fit a vented "
                                "radiation shield, or replace it")
        elif q == "depth_cm" and v < -10:
            status = max(status, Status.WARN)
            problems.append(f"{_fmt(q, v)}: the road reads higher than the mount height")
            remedy = remedy or f"measure the sensor face to dry road and fix mount_height_cm " \
                f"(now {cfg.get('mount_height_cm')})"
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
            return skip(cid, f"not probed: I2C bus {n} is not usable (see i2c.bus{n})")
        found = ctx.scratch.get(f"i2c.scan.bus{n}")
        if found is not None and s["address"] not in found:
            return skip(cid, f"not probed: nothing at 0x{s['address']:02x} (see i2c.scan.bus{n})")
    else:
        gpio = ctx.prior("gpio")
        if gpio and gpio[0].status is Status.FAIL:
            return skip(cid, "not probed: GPIO is not usable (see gpio)")
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
    for _ in range(8):
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
        return ok(cid, f"{stype} {name}: pins held by the running daemon, which reads it fine "
                  f"({seen.get('reads', '?')} reads, {seen.get('faults', 0)} faults)")
    return fail(cid, f"{stype} {name}: the running daemon reports {seen.get('state')}: {seen.get('error')}",
                REMEDY_WIRING.get(stype, "check the sensor's wiring"))


def _gpio_remedy(exc: BaseException) -> str:
    kind = type(exc).__name__
    if "PinFactory" in kind:
        return "no GPIO library: install the Pi extras (pip install 'streetnode[pi]', i.e. lgpio)"
    if _pin_busy(exc):
        return ("the pin is held by another program; if the streetnode service runs, that is expected: "
                "sudo systemctl stop streetnode for a full check, then start it again")
    return "check that GPIO works: ls -l /dev/gpiochip*; add the service user to group gpio"


# ---------------------------------------------------------------- GPIO
def _pins(ctx: DiagContext) -> list[tuple[int, str]]:
    from node.config import gpio_pins

    return gpio_pins(ctx.cfg) if ctx.cfg is not None else []


def check_gpio(ctx: DiagContext) -> Result:
    pins = _pins(ctx)
    if not pins:
        return skip("gpio", "no GPIO pins configured")
    if not ctx.emulate:
        chip = ctx.path("/dev/gpiochip0")
        if not chip.exists():
            return fail("gpio", f"{ctx.shown(chip)} is missing: no GPIO on this system",
                        "run on the Raspberry Pi (or use --emulate for training)")
        user = ctx.service_user()
        if not user.can_access(chip.stat()):
            return fail("gpio", f"{ctx.shown(chip)}: permission denied for user {user.name}",
                        f"add the service user to group gpio: sudo usermod -aG gpio {user.name}")
        chosen, causes = ctx.scratch.get("pin_factory", (True, ""))
        if chosen is None:
            from node.logsetup import GPIO_REMEDY

            return fail("gpio", f"no GPIO library works here ({causes})", GPIO_REMEDY)
    from gpiozero import DigitalInputDevice

    factory = hardware(ctx).pin_factory
    daemon = daemon_sensors(ctx)
    states, problems = [], []
    for pin, what in pins:
        dev = None
        try:
            dev = DigitalInputDevice(pin, pull_up=None, active_state=True, pin_factory=factory)
            states.append(f"GPIO{pin} ({what}) reads {'high' if dev.value else 'low'}")
        except Exception as e:  # gpiozero raises many kinds; each becomes a line
            if _pin_busy(e) and daemon is not None:
                states.append(f"GPIO{pin} ({what}) held by the running daemon")
                continue
            problems.append((f"GPIO{pin} ({what}): {type(e).__name__}: {e}", _gpio_remedy(e)))
        finally:
            if dev is not None:
                dev.close()
    if problems:
        return fail("gpio", "; ".join(p for p, _ in problems), problems[0][1], detail="\n".join(states))
    return ok("gpio", f"{len(pins)} pins usable: " + ", ".join(states))
