"""Everything a check may look at, with the injection points tests and training use.

* ``sysroot``: a directory standing in for ``/`` when reading ``/dev``, ``/sys``,
  ``/proc`` and ``/run`` (``--root DIR`` or ``$STREETNODE_SYSROOT``). Tests and
  training build a fake Pi there: ``dev/i2c-1`` with mode 000, a
  ``sys/devices/platform/soc/soc:firmware/get_throttled`` holding ``0x50005``...
* ``emulate``: a scenario name when the node runs on emulated hardware
  (``--emulate [SCENARIO]`` or ``[emulation] enabled``); the rig's buses and pin
  factory then stand in for ``/dev/i2c-N`` and the GPIO chip.
* ``faults``: ``(target, fault)`` pairs injected into the rig
  (``--fault weather:absent``, ``$STREETNODE_FAULTS="weather:absent,flood:dead_echo"``).
"""

from __future__ import annotations

import grp
import os
import pwd
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.config import Config
from node.errors import ConfigError
from node.i18n import _

SYSROOT_ENV = "STREETNODE_SYSROOT"
FAULTS_ENV = "STREETNODE_FAULTS"
SERVICE_NAME = "streetnode"
SERVICE_USER = "streetnode"


def parse_faults(specs: list[str]) -> list[tuple[str, str]]:
    """``["weather:absent", "flood:dead_echo,air:nack"]`` -> pairs; ValueError names a bad one."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            target, sep, fault = part.partition(":")
            if not sep or not target or not fault:
                raise ValueError(_("--fault: expected TARGET:FAULT such as weather:absent, got {part!r}")
                                 .format(part=part))
            out.append((target, fault))
    return out


@dataclass
class ServiceUser:
    name: str
    uid: int
    gids: set[int]
    how: str  # how it was determined, for the report

    def can_access(self, st: os.stat_result, want: int = 6) -> bool:
        """Would this user get ``want`` (4 read, 2 write) on a file with ``st``? (root: always)"""
        if self.uid == 0:
            return True
        mode = st.st_mode
        if st.st_uid == self.uid:
            bits = (mode >> 6) & 7
        elif st.st_gid in self.gids:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        return bits & want == want


def _user(uid: int, how: str) -> ServiceUser:
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return ServiceUser(str(uid), uid, set(), how)
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    return ServiceUser(pw.pw_name, uid, gids, how)


@dataclass
class DiagContext:
    cfg: Config | None
    config_error: ConfigError | None = None
    config_path: str = ""
    sysroot: Path = Path("/")
    emulate: str | None = None
    speed: float = 1.0
    faults: list[tuple[str, str]] = field(default_factory=list)
    wall: Callable[[], float] = time.time
    debug: bool = False
    scratch: dict[str, Any] = field(default_factory=dict, repr=False)  # checks hand facts to later ones
    _rig_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _bus_locks: dict[int, threading.Lock] = field(default_factory=dict, repr=False)
    _runner: Any = field(default=None, repr=False)

    # ------------------------------------------------------------ paths
    @property
    def explicit_root(self) -> bool:
        return self.sysroot != Path("/")

    def path(self, absolute: str) -> Path:
        """``/dev/i2c-1`` under the system root."""
        return self.sysroot / absolute.lstrip("/")

    def shown(self, p: Path) -> str:
        """A path as the technician should read it (without the training root)."""
        try:
            return "/" + str(p.relative_to(self.sysroot)) if self.explicit_root else str(p)
        except ValueError:
            return str(p)

    @property
    def state_dir(self) -> Path:
        return self.cfg.state_dir if self.cfg else Path("/var/lib/streetnode")

    @property
    def node_id(self) -> str | None:
        return self.cfg.node["id"] if self.cfg else None

    def service_user(self) -> ServiceUser:
        """The daemon's user: owner of the state dir, else user 'streetnode', else us."""
        try:
            return _user(self.state_dir.stat().st_uid, _("owner of {path}").format(path=self.state_dir))
        except OSError:
            pass
        try:
            return _user(pwd.getpwnam(SERVICE_USER).pw_uid, _("the service user"))
        except KeyError:
            return _user(os.getuid(), _("the current user"))

    # ------------------------------------------------------------ hardware
    def bus_lock(self, n: int) -> threading.Lock:
        with self._rig_lock:
            return self._bus_locks.setdefault(n, threading.Lock())

    def rig(self) -> Any:
        """The emulated rig (built once, faults injected); only when emulating."""
        return self.once("rig", self._make_rig)

    def _make_rig(self) -> Any:
        from drivers.emulator import EmulatedRig

        rig = EmulatedRig(self.emulate or "calm", speed=self.speed)
        # wire the ranger and the gauge first: pin classes are fixed when a mock pin is first made,
        # and faults of a GPIO part apply to the part as attached
        for s in self.cfg.sensors if self.cfg else []:
            if s["enabled"] and s["type"] == "flood":
                rig.attach_ranger(s["trigger_pin"], s["echo_pin"], mount_height_cm=s["mount_height_cm"])
            elif s["enabled"] and s["type"] == "rain":
                rig.attach_rain(s["pin"], mm_per_tip=s["mm_per_tip"], debounce_s=s["debounce"])
        for a in self.cfg.alarms if self.cfg else []:
            rig.attach_lamp(a["pin"], a["name"])  # the emulated warning light shows each switch
        for target, fault in self.faults:
            kind = target
            if self.cfg is not None and target in {s["name"] for s in self.cfg.sensors}:
                kind = self.cfg.sensor(target)["type"]  # training names sensors as configured
            if fault == "moved":  # the BME280 strapped to its other address (SDO jumper)
                bus = rig.bus(1)
                old = next(a for a in (0x76, 0x77) if a in bus.devices)
                bus.attach(old ^ 0x01, bus.devices[old])
                bus.detach(old)
                continue
            try:
                rig.inject(kind, fault)
            except (ValueError, KeyError) as e:
                raise ValueError(_("--fault {target}:{fault}: {reason}").format(
                    target=target, fault=fault, reason=e)) from None
        return rig

    def once(self, key: str, factory: Callable[[], Any]) -> Any:
        """``factory()`` built once per run and shared by every check (thread-safe)."""
        with self._rig_lock:
            if key not in self.scratch:
                self.scratch[key] = factory()
            return self.scratch[key]

    def close(self) -> None:
        """Stop what the run started (the emulated rig's threads)."""
        rig = self.scratch.get("rig")
        if rig is not None:
            rig.close()

    # ------------------------------------------------------------ runner
    def bind_runner(self, runner: Any) -> None:
        self._runner = runner

    def prior(self, check_id: str) -> list[Any]:
        """Results of a check this one ``needs`` (empty if it did not run)."""
        return (self._runner.done(check_id) if self._runner else None) or []
