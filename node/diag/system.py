"""Checks of the Pi itself: configuration, I2C device nodes, disk, power, temperature, clock, service."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from node.config import BUILTIN_EMULATED
from node.diag.context import SERVICE_NAME, DiagContext
from node.diag.core import Result, fail, ok, skip, warn
from node.i18n import N_, _, date_time, number

THROTTLED_PATH = "/sys/devices/platform/soc/soc:firmware/get_throttled"
THERMAL_PATH = "/sys/class/thermal/thermal_zone0/temp"
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"

# remedies: marked here, translated where a check uses them (_(REMEDY_...))
REMEDY_ENABLE_I2C = N_("enable I2C: sudo raspi-config nonint do_i2c 0, then reboot")
REMEDY_I2C_GROUP = N_("add the service user to group i2c: sudo usermod -aG i2c {user}, then restart the "
                      "service")
REMEDY_POWER = N_("use a 5.1 V / 3 A supply (the official Pi PSU) and a short, thick cable; check the "
                  "PoE splitter / pole supply voltage")
REMEDY_HOT = N_("shade the enclosure, fit a heatsink, check that the vents are not blocked")
REMEDY_DISK = N_("free space on the SD card: sudo journalctl --vacuum-size=50M; sudo apt-get clean; "
                 "remove old files; or lower [buffer].max_size")
REMEDY_CLOCK = N_("give the node NTP: check the uplink and `timedatectl timesync-status`; readings stay "
                  "flagged clock_unsynced and are corrected once the clock syncs")
REMEDY_SUDO = N_("run diag as root (sudo)")
REMEDY_CLOCK_SUSPECT = N_("an NTP server gives the node a wrong time: check `timedatectl timesync-status` "
                          "and the servers in /etc/systemd/timesyncd.conf; meanwhile readings follow the "
                          "central's time and are flagged clock_corrected")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{number(n, 0)} {unit}" if unit == "B" else f"{number(n, 1)} {unit}"
        n /= 1024
    return f"{number(n, 1)} GiB"


def fmt_age(seconds: float) -> str:
    s = abs(seconds)
    if s < 120:
        return _("{n} s").format(n=number(s, 0))
    if s < 7200:
        return _("{n} min").format(n=number(s / 60, 0))
    if s < 172800:
        return _("{n} h").format(n=number(s / 3600, 1))
    return _("{n} days").format(n=number(s / 86400, 1))


def fmt_time(wall_s: float) -> str:
    """English: UTC as before; Vietnamese: d/m/Y in the node's time zone (`node.i18n.date_time`)."""
    return date_time(wall_s)


# ---------------------------------------------------------------- configuration
def check_config(ctx: DiagContext) -> Result:
    if ctx.cfg is None:
        problems = ctx.config_error.problems if ctx.config_error else [_("no configuration")]
        if len(problems) > 1:
            summary = _("configuration invalid: {problem} (+{more} more)").format(
                problem=problems[0], more=len(problems) - 1)
        else:
            summary = _("configuration invalid: {problem}").format(problem=problems[0])
        if ctx.config_path:
            remedy = _("fix {path}; `streetnode config check` lists every problem").format(
                path=ctx.config_path)
        else:
            remedy = _("fix the configuration; `streetnode config check` lists every problem")
        return fail("config", summary, remedy, detail="\n".join(problems))
    enabled = [s for s in ctx.cfg.sensors if s["enabled"]]
    from node.fleet import describe

    source = ctx.cfg.source
    if source == BUILTIN_EMULATED:
        source = _(BUILTIN_EMULATED)
    summary = _("configuration valid: {source}, node {node}, {enabled} of {total} sensors "
                "enabled").format(source=source, node=ctx.node_id, enabled=len(enabled),
                                  total=len(ctx.cfg.sensors))
    return ok("config", f"{summary}; {describe(ctx.cfg)}")  # the fleet part: i18n_extract.PENDING


# ---------------------------------------------------------------- I2C device nodes
def _owner(st: os.stat_result) -> str:
    import grp
    import pwd
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group} {stat.S_IMODE(st.st_mode):04o}"


def check_i2c_bus(ctx: DiagContext, n: int) -> Result:
    cid = f"i2c.bus{n}"
    if ctx.emulate and not ctx.explicit_root:
        return ok(cid, _("emulated I2C bus {bus} (scenario {scenario}); no /dev/i2c-{bus} needed").format(
            bus=n, scenario=ctx.emulate))
    p = ctx.path(f"/dev/i2c-{n}")
    try:
        st = p.stat()
    except FileNotFoundError:
        others = sorted(ctx.shown(x) for x in p.parent.glob("i2c-*")) if p.parent.is_dir() else []
        detail = _("present instead: {paths}; check `bus =` in the config").format(
            paths=", ".join(others)) if others else ""
        return fail(cid, _("{path} is missing: the I2C interface is off").format(path=ctx.shown(p)),
                    _(REMEDY_ENABLE_I2C), detail=detail)
    except PermissionError as e:
        return fail(cid, f"{ctx.shown(p)}: {e.strerror}", _(REMEDY_I2C_GROUP).format(user="streetnode"))
    if not ctx.explicit_root and not stat.S_ISCHR(st.st_mode):
        return fail(cid, _("{path} is not a character device").format(path=ctx.shown(p)),
                    _(REMEDY_ENABLE_I2C))
    user = ctx.service_user()
    denied = not user.can_access(st)
    if not denied and user.uid == os.getuid() and os.getuid() != 0:
        try:
            os.close(os.open(p, os.O_RDWR))
        except PermissionError:
            denied = True
        except OSError:
            pass
    if denied:
        return fail(cid, _("{path}: permission denied for user {user} ({owner})").format(
            path=ctx.shown(p), user=user.name, owner=_owner(st)),
                    _(REMEDY_I2C_GROUP).format(user=user.name),
                    detail=_("service user {user} is {how}").format(user=user.name, how=user.how))
    return ok(cid, _("{path} present, read/write for {user} ({owner})").format(
        path=ctx.shown(p), user=user.name, owner=_owner(st)))


# ---------------------------------------------------------------- disk
def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_disk(ctx: DiagContext) -> Result:
    where = _existing(ctx.state_dir)
    try:
        vfs = os.statvfs(where)
    except OSError as e:
        return fail("disk", _("cannot stat {path}: {reason}").format(path=where, reason=e.strerror),
                    _("check that the SD card is mounted"))
    total = vfs.f_blocks * vfs.f_frsize
    free = vfs.f_bavail * vfs.f_frsize
    pct = 100.0 * free / total if total else 0.0
    text = _("{free} free of {total} ({percent}%) at {path}").format(
        free=_fmt_bytes(free), total=_fmt_bytes(total), percent=number(pct, 1), path=where)
    detail = "" if where == ctx.state_dir else _("state dir {path} does not exist yet").format(
        path=ctx.state_dir)
    if pct < 5 or free < 10 * 1024**2:
        return fail("disk", _("disk nearly full: {space}").format(space=text), _(REMEDY_DISK), detail)
    if vfs.f_files and vfs.f_favail < vfs.f_files * 0.05:
        return fail("disk", _("out of inodes: {free} of {total} free at {path}").format(
            free=vfs.f_favail, total=vfs.f_files, path=where),
                    _("remove many small files (old logs, caches) on the SD card"), detail)
    if pct < 15:
        return warn("disk", _("disk space low: {space}").format(space=text), _(REMEDY_DISK), detail)
    if ctx.cfg is not None:
        max_size = ctx.cfg.buffer["max_size"]
        used = sum(f.stat().st_size for f in ctx.state_dir.glob("buffer*") if f.is_file()) \
            if ctx.state_dir.is_dir() else 0
        if max_size - used > free:
            return warn("disk", _("{space}: less than [buffer].max_size ({size})").format(
                space=text, size=_fmt_bytes(max_size)),
                        _("lower [buffer].max_size below {size} or free space").format(
                            size=_fmt_bytes(free + used)), detail)
    return ok("disk", text, detail)


# ---------------------------------------------------------------- power and temperature
_NOW = {0: N_("under-voltage"), 1: N_("ARM frequency capped"), 2: N_("throttled"),
        3: N_("soft temperature limit")}


def check_power(ctx: DiagContext) -> Result:
    p = ctx.path(THROTTLED_PATH)
    try:
        raw = p.read_text().strip()
    except FileNotFoundError:
        return skip("power", _("no firmware throttle flags here (not a Raspberry Pi?)"),
                    detail=_("{path} does not exist").format(path=ctx.shown(p)))
    except OSError as e:
        return warn("power", _("cannot read {path}: {reason}").format(path=ctx.shown(p), reason=e.strerror),
                    _(REMEDY_SUDO))
    try:
        flags = int(raw, 16) if raw.lower().startswith("0x") else int(raw, 0)
    except ValueError:
        return warn("power", _("unreadable throttle flags {raw!r}").format(raw=raw),
                    _("update the Pi firmware"))
    now = ", ".join(_(name) for bit, name in _NOW.items() if flags & (1 << bit))
    past = ", ".join(_(name) for bit, name in _NOW.items() if flags & (1 << (bit + 16)))
    hexflags = f"0x{flags:x}"
    if flags & 1:
        return fail("power", _("under-voltage NOW ({now}; flags {flags})").format(now=now, flags=hexflags),
                    _(REMEDY_POWER), detail=_("since boot: {what}").format(what=past or _("nothing")))
    if now:
        hot = flags & 0b1010 and not flags & 0b0100
        remedy = _(REMEDY_HOT) if hot else _(REMEDY_POWER) + "; " + _(REMEDY_HOT)
        return warn("power", _("{what} now (flags {flags})").format(what=now, flags=hexflags), remedy)
    if flags & (1 << 16):
        return warn("power", _("under-voltage occurred since boot, not now (flags {flags})").format(
            flags=hexflags), _(REMEDY_POWER), detail=_("since boot: {what}").format(what=past))
    if past:
        return warn("power", _("since boot: {what} (flags {flags})").format(what=past, flags=hexflags),
                    _(REMEDY_HOT))
    return ok("power", _("no under-voltage or throttling now or since boot (flags {flags})").format(
        flags=hexflags))


def check_cpu_temp(ctx: DiagContext) -> Result:
    p = ctx.path(THERMAL_PATH)
    try:
        temp = int(p.read_text().strip()) / 1000.0
    except FileNotFoundError:
        return skip("cpu_temp", _("no CPU temperature sensor here"),
                    detail=_("{path} does not exist").format(path=ctx.shown(p)))
    except (OSError, ValueError) as e:
        return warn("cpu_temp", _("cannot read {path}: {reason}").format(path=ctx.shown(p), reason=e),
                    _(REMEDY_SUDO))
    celsius = number(temp, 1)
    if temp >= 80:
        return fail("cpu_temp", _("CPU at {celsius} °C: the firmware throttles from 80 °C").format(
            celsius=celsius), _(REMEDY_HOT))
    if temp >= 70:
        return warn("cpu_temp", _("CPU at {celsius} °C, close to throttling (80 °C)").format(
            celsius=celsius), _(REMEDY_HOT))
    return ok("cpu_temp", _("CPU at {celsius} °C").format(celsius=celsius))


# ---------------------------------------------------------------- clock
def check_clock(ctx: DiagContext) -> Result:
    from node import clock

    flag = ctx.path(TIMESYNC_FLAG)
    # under a training/test root only the flag file counts, never this machine's kernel state
    synced = clock.is_synchronized(paths=[str(flag)], kernel=not ctx.explicit_root)
    if synced is None and ctx.explicit_root:
        synced = False
    now = ctx.wall()
    suspect = _suspect_clock(ctx, now)
    if suspect is not None:
        return warn("clock", suspect, _(REMEDY_CLOCK_SUSPECT))
    if synced:
        how = "systemd-timesyncd" if flag.exists() else _("kernel NTP state")
        return ok("clock", _("synchronized ({how}); now {time}").format(how=how, time=fmt_time(now)))
    lkg_ms = clock.last_known_good_time(ctx.state_dir)
    state = _("not synchronized") if synced is False else _("synchronization state unknown")
    if lkg_ms is None:
        return warn("clock", _("{state}; no last known good time recorded: the clock may be arbitrarily "
                               "wrong (it reads {time})").format(state=state, time=fmt_time(now)),
                    _(REMEDY_CLOCK))
    lkg = lkg_ms / 1000.0
    if now < lkg:
        return fail("clock", _("{state} and {age} BEHIND the last known good time {good}: it reads "
                               "{time}").format(state=state, age=fmt_age(lkg - now), good=fmt_time(lkg),
                                                time=fmt_time(now)), _(REMEDY_CLOCK))
    return warn("clock", _("{state}; last known good time {good}, {age} before the clock's {time}; it "
                           "may be behind by as long as the node was off").format(
        state=state, good=fmt_time(lkg), age=fmt_age(now - lkg), time=fmt_time(now)), _(REMEDY_CLOCK))


def _suspect_clock(ctx: DiagContext, now: float) -> str | None:
    """The daemon's word (its state file, if fresh) that the clock claims sync but is off from the
    central by more than ``[clock] suspect_s`` (node/clock.py)."""
    from node.agent import read_state

    state = read_state(ctx.state_dir) or {}
    clock = state.get("clock") or {}
    if clock.get("state") != "suspect" or now - float(state.get("updated_at") or 0) > STATE_FRESH_S:
        return None
    off_s = float(clock.get("offset_ms") or 0) / 1000
    bound = fmt_age(float(clock.get("suspect_s") or 0))
    if off_s > 0:
        text = _("SUSPECT: the clock claims synchronization but is {off} behind the central's time "
                 "(bound {bound}); it reads {time}")
    else:
        text = _("SUSPECT: the clock claims synchronization but is {off} ahead of the central's time "
                 "(bound {bound}); it reads {time}")
    return text.format(off=fmt_age(abs(off_s)), bound=bound, time=fmt_time(now))


# ---------------------------------------------------------------- service
def check_service(ctx: DiagContext) -> Result:
    systemctl = shutil.which("systemctl")
    if not systemctl or not ctx.path("/run/systemd/system").is_dir():
        return _service_from_state_file(ctx)
    props = "LoadState,ActiveState,SubState,NRestarts,MainPID,ActiveEnterTimestamp"
    try:
        out = subprocess.run([systemctl, "show", f"{SERVICE_NAME}.service", f"--property={props}"],
                             capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return warn("service", _("systemctl did not answer: {reason}").format(reason=e),
                    _("check systemd: systemctl status"))
    info = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0 or not info:
        return warn("service", _("systemctl show failed: {reason}").format(
            reason=out.stderr.strip() or out.returncode), _("check systemd: systemctl status"))
    journal = _("see why: journalctl -u {service} -n 50").format(service=SERVICE_NAME)
    if info.get("LoadState") == "not-found":
        return fail("service", _("{service}.service is not installed").format(service=SERVICE_NAME),
                    _("install the unit: sudo cp deploy/systemd/streetnode.service /etc/systemd/system/ "
                      "&& sudo systemctl enable --now streetnode"))
    active, sub = info.get("ActiveState", "?"), info.get("SubState", "?")
    if active != "active":
        return fail("service", _("daemon not running ({active}/{sub})").format(active=active, sub=sub),
                    f"sudo systemctl restart {SERVICE_NAME}; {journal}")  # i18n: no (a command)
    restarts = int(info.get("NRestarts", "0") or 0)
    since = info.get("ActiveEnterTimestamp", "")
    if restarts:
        return warn("service", _("daemon running (pid {pid}) but restarted {restarts} times; up since "
                                 "{since}").format(pid=info.get("MainPID"), restarts=restarts, since=since),
                    journal)
    return ok("service", _("daemon running (pid {pid}) since {since}, no restarts").format(
        pid=info.get("MainPID"), since=since))


STATE_FRESH_S = 30.0  # the agent rewrites its state file every few seconds


def _service_from_state_file(ctx: DiagContext) -> Result:
    from node.agent import STATE_FILE, read_state

    state = read_state(ctx.state_dir)
    if state is None:
        return skip("service", _("systemctl not available (not booted with systemd) and no daemon state "
                                 "file in {path}: daemon state unknown").format(path=ctx.state_dir))
    age = ctx.wall() - float(state.get("updated_at") or 0)
    pid = state.get("pid")
    alive = False
    if isinstance(pid, int) and not ctx.explicit_root:
        try:
            os.kill(pid, 0)
            alive = True
        except PermissionError:
            alive = True
        except OSError:
            alive = False
    fresh = age <= STATE_FRESH_S
    where = f"{ctx.state_dir / STATE_FILE}"
    if fresh and (alive or ctx.explicit_root):
        return ok("service", _("systemctl not available; daemon running (pid {pid}), state file updated "
                               "{age} ago").format(pid=pid, age=fmt_age(age)))
    return fail("service", _("systemctl not available; daemon not running: {path} last updated {age} "
                             "ago").format(path=where, age=fmt_age(age)),
                _("start it: sudo systemctl start streetnode (or `streetnode run`)"))
