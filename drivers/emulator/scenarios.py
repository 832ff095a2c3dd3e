"""Scenarios as data: the physical truth over scenario seconds (``scenarios/*.toml``).

Each file lists keyframes (hour, then one column per quantity); the truth between them is
linear. A ``repeat = true`` scenario (calm: one day) loops; others hold their last values.
Rain is integrated exactly over the piecewise-linear rain rate.

An optional fault schedule makes sensor faults part of the scenario, played by the rig
(`EmulatedRig.play`): ``faults = [{target = "bme280", fault = "absent", from_s = 30, until_s = 90}]``
(scenario seconds, not repeated with the keyframes; target and fault as for
``EmulatedRig.inject``).
An optional ``[clock]`` table gives the node an emulated wall clock without an RTC
(`EmulatedRig.wall_time` / `EmulatedRig.clock_synced`): ``offset_s`` from the real clock and
whether it is ``synced`` at the start, and ``steps = [{at_s = 40, offset_s = 0, synced = true}]``
(the clock set by NTP at scenario second 40). Without ``synced`` the sync state is unknown.
``boot_id`` (optional) names the emulated boot: a power cut that reboots the node is a new id.

`scenario()` takes a built-in name or the path of a ``.toml`` file of the same form.
"""

from __future__ import annotations

import bisect
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent / "scenarios"
COLUMNS = ("temperature_c", "humidity_pct", "pressure_hpa", "rain_rate_mm_h", "depth_cm",
           "pm1_0_ugm3", "pm2_5_ugm3", "pm10_ugm3")


@dataclass(frozen=True)
class FaultWindow:
    """A sensor fault the rig injects at ``from_s`` and clears at ``until_s`` (scenario seconds)."""

    target: str
    fault: str
    from_s: float
    until_s: float


@dataclass(frozen=True)
class ClockStep:
    """From scenario second ``at_s`` the wall clock is ``offset_s`` off the real one."""

    at_s: float
    offset_s: float
    synced: bool | None


@dataclass(frozen=True)
class ClockPlan:
    offset_s: float
    synced: bool | None
    steps: tuple[ClockStep, ...] = ()
    boot_id: str | None = None

    def at(self, t_s: float) -> tuple[float, bool | None]:
        """(offset from the real wall clock in s, synchronized?) at scenario time ``t_s``."""
        offset, synced = self.offset_s, self.synced
        for st in self.steps:
            if st.at_s <= t_s:
                offset, synced = st.offset_s, st.synced
        return offset, synced


@dataclass(frozen=True)
class Truth:
    """What the world is like at scenario time ``t_s``."""

    t_s: float
    temperature_c: float
    humidity_pct: float
    pressure_hpa: float
    rain_rate_mm_h: float
    depth_cm: float
    pm1_0_ugm3: float
    pm2_5_ugm3: float
    pm10_ugm3: float


class Scenario:
    def __init__(self, name: str, points: list[list[float]], *, repeat: bool = False,
                 description: str = "", faults: tuple[FaultWindow, ...] = (),
                 clock: ClockPlan | None = None) -> None:
        if len(points) < 2 or any(len(p) != len(COLUMNS) + 1 for p in points):
            raise ValueError(f"scenario {name}: need >= 2 keyframes of {len(COLUMNS) + 1} numbers")
        self.name, self.repeat, self.description = name, repeat, description
        self.faults = tuple(faults)
        self.clock = clock
        self.times = [p[0] * 3600.0 for p in points]
        if self.times != sorted(self.times) or self.times[0] != 0:
            raise ValueError(f"scenario {name}: keyframe hours must start at 0 and increase")
        self.rows = [tuple(float(v) for v in p[1:]) for p in points]
        self.duration_s = self.times[-1]
        ri = COLUMNS.index("rain_rate_mm_h")
        self._cum_mm = [0.0]
        for i in range(1, len(self.times)):
            dt_h = (self.times[i] - self.times[i - 1]) / 3600.0
            self._cum_mm.append(self._cum_mm[-1] + dt_h * (self.rows[i - 1][ri] + self.rows[i][ri]) / 2)

    def _local(self, t_s: float) -> float:
        if self.repeat:
            return t_s % self.duration_s
        return min(max(t_s, 0.0), self.duration_s)

    def _segment(self, t: float) -> tuple[int, float]:
        i = max(0, min(bisect.bisect_right(self.times, t) - 1, len(self.times) - 2))
        span = self.times[i + 1] - self.times[i]
        return i, (t - self.times[i]) / span if span else 0.0

    def at(self, t_s: float) -> Truth:
        i, f = self._segment(self._local(t_s))
        a, b = self.rows[i], self.rows[i + 1]
        return Truth(t_s, *(x + (y - x) * f for x, y in zip(a, b, strict=True)))

    __call__ = at

    def _cumulative(self, t_s: float) -> float:
        if t_s <= 0:
            return 0.0
        periods = 0.0
        if self.repeat:
            periods = (t_s // self.duration_s) * self._cum_mm[-1]
        elif t_s >= self.duration_s:
            last = self.rows[-1][COLUMNS.index("rain_rate_mm_h")]
            return self._cum_mm[-1] + last * (t_s - self.duration_s) / 3600.0
        t = self._local(t_s)
        i, f = self._segment(t)
        ri = COLUMNS.index("rain_rate_mm_h")
        r0, r1 = self.rows[i][ri], self.rows[i + 1][ri]
        dt_h = (t - self.times[i]) / 3600.0
        return periods + self._cum_mm[i] + dt_h * (r0 + (r0 + (r1 - r0) * f)) / 2

    def faults_at(self, t_s: float) -> set[tuple[str, str]]:
        """(target, fault) pairs the schedule wants active at scenario time ``t_s``."""
        return {(f.target, f.fault) for f in self.faults if f.from_s <= t_s < f.until_s}

    def rain_mm(self, t0_s: float, t1_s: float) -> float:
        """Rain that fell between two scenario times (mm)."""
        return self._cumulative(t1_s) - self._cumulative(t0_s)


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def _fault_windows(name: str, raw: object) -> tuple[FaultWindow, ...]:
    if not isinstance(raw, list):
        raise ValueError(f"scenario {name}: faults must be an array of tables")
    out = []
    for i, f in enumerate(raw):
        try:
            w = FaultWindow(str(f["target"]), str(f["fault"]), float(f["from_s"]), float(f["until_s"]))
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"scenario {name}: faults[{i}]: "
                             "expected {target, fault, from_s, until_s}") from None
        if w.until_s <= w.from_s:
            raise ValueError(f"scenario {name}: faults[{i}]: until_s must be after from_s")
        out.append(w)
    return tuple(out)


def _clock_plan(name: str, raw: object) -> ClockPlan | None:
    if raw is None:
        return None
    try:
        assert isinstance(raw, dict)
        steps = tuple(sorted((ClockStep(float(st["at_s"]), float(st["offset_s"]), st.get("synced"))
                              for st in raw.get("steps", [])), key=lambda st: st.at_s))
        boot_id = raw.get("boot_id")
        plan = ClockPlan(float(raw.get("offset_s", 0.0)), raw.get("synced"), steps,
                         None if boot_id is None else str(boot_id))
    except (AssertionError, TypeError, KeyError, ValueError, AttributeError):
        raise ValueError(f"scenario {name}: [clock]: expected offset_s, synced, boot_id and "
                         "steps = [{at_s, offset_s, synced}]") from None
    if any(v not in (None, True, False) for v in (plan.synced, *(st.synced for st in steps))):
        raise ValueError(f"scenario {name}: [clock]: synced must be true or false")
    return plan


def load(path: Path, name: str | None = None) -> Scenario:
    """A scenario from a TOML file (keyframes, optional fault schedule)."""
    name = name or path.stem
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"scenario {name}: cannot read {path}: {e}") from None
    if tuple(data.get("columns", ())) != ("hour", *COLUMNS):
        raise ValueError(f"scenario {name}: columns must be hour, {', '.join(COLUMNS)}")
    return Scenario(name, data["points"], repeat=bool(data.get("repeat", False)),
                    description=data.get("description", ""),
                    faults=_fault_windows(name, data.get("faults", [])),
                    clock=_clock_plan(name, data.get("clock")))


def scenario(name: str) -> Scenario:
    """The named scenario (``calm``, ``storm``) or a ``.toml`` file; ValueError naming the known ones."""
    if name.endswith(".toml"):
        return load(Path(name))  # a file can change between runs: not cached
    return _builtin(name)


@cache
def _builtin(name: str) -> Scenario:
    path = HERE / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"unknown scenario {name!r} "
                         f"(known: {', '.join(names())}, or a path to a .toml file)")
    return load(path, name)
