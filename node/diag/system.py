"""Checks of the Pi itself: configuration, I2C device nodes, disk, power, temperature, clock, service."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

from node.diag.context import SERVICE_NAME, DiagContext
from node.diag.core import Result, fail, ok, skip, warn

THROTTLED_PATH = "/sys/devices/platform/soc/soc:firmware/get_throttled"
THERMAL_PATH = "/sys/class/thermal/thermal_zone0/temp"
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"

REMEDY_ENABLE_I2C = "enable I2C: sudo raspi-config nonint do_i2c 0, then reboot"
REMEDY_I2C_GROUP = "add the service user to group i2c: sudo usermod -aG i2c {user}, then restart the service"
REMEDY_POWER = ("use a 5.1 V / 3 A supply (the official Pi PSU) and a short, thick cable; "
                "check the PoE splitter / pole supply voltage")
REMEDY_HOT = "shade the enclosure, fit a heatsink, check that the vents are not blocked"
REMEDY_DISK = ("free space on the SD card: sudo journalctl --vacuum-size=50M; sudo apt-get clean; "
               "remove old files; or lower [buffer].max_size")
REMEDY_CLOCK = ("give the node NTP: check the uplink and `timedatectl timesync-status`; readings stay "
                "flagged clock_unsynced and are corrected once the clock syncs")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_age(seconds: float) -> str:
    s = abs(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def fmt_time(wall_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall_s))


# ---------------------------------------------------------------- configuration
def check_config(ctx: DiagContext) -> Result:
    if ctx.cfg is None:
        problems = ctx.config_error.problems if ctx.config_error else ["no configuration"]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return fail("config", f"configuration invalid: {problems[0]}{more}",
                    f"fix {ctx.config_path or 'the configuration'}; "
                    "`streetnode config check` lists every problem", detail="\n".join(problems))
    enabled = [s for s in ctx.cfg.sensors if s["enabled"]]
    from node.fleet import describe

    return ok("config", f"configuration valid: {ctx.cfg.source}, node {ctx.node_id}, "
              f"{len(enabled)} of {len(ctx.cfg.sensors)} sensors enabled; {describe(ctx.cfg)}")


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
        return ok(cid, f"emulated I2C bus {n} (scenario {ctx.emulate}); no /dev/i2c-{n} needed")
    p = ctx.path(f"/dev/i2c-{n}")
    try:
        st = p.stat()
    except FileNotFoundError:
        others = sorted(ctx.shown(x) for x in p.parent.glob("i2c-*")) if p.parent.is_dir() else []
        detail = f"present instead: {', '.join(others)}; check `bus =` in the config" if others else ""
        return fail(cid, f"{ctx.shown(p)} is missing: the I2C interface is off", REMEDY_ENABLE_I2C,
                    detail=detail)
    except PermissionError as e:
        return fail(cid, f"{ctx.shown(p)}: {e.strerror}", REMEDY_I2C_GROUP.format(user="streetnode"))
    if not ctx.explicit_root and not stat.S_ISCHR(st.st_mode):
        return fail(cid, f"{ctx.shown(p)} is not a character device", REMEDY_ENABLE_I2C)
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
        return fail(cid, f"{ctx.shown(p)}: permission denied for user {user.name} ({_owner(st)})",
                    REMEDY_I2C_GROUP.format(user=user.name),
                    detail=f"service user {user.name} is {user.how}")
    return ok(cid, f"{ctx.shown(p)} present, read/write for {user.name} ({_owner(st)})")


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
        return fail("disk", f"cannot stat {where}: {e.strerror}", "check that the SD card is mounted")
    total = vfs.f_blocks * vfs.f_frsize
    free = vfs.f_bavail * vfs.f_frsize
    pct = 100.0 * free / total if total else 0.0
    text = f"{_fmt_bytes(free)} free of {_fmt_bytes(total)} ({pct:.1f}%) at {where}"
    detail = "" if where == ctx.state_dir else f"state dir {ctx.state_dir} does not exist yet"
    if pct < 5 or free < 10 * 1024**2:
        return fail("disk", f"disk nearly full: {text}", REMEDY_DISK, detail)
    if vfs.f_files and vfs.f_favail < vfs.f_files * 0.05:
        return fail("disk", f"out of inodes: {vfs.f_favail} of {vfs.f_files} free at {where}",
                    "remove many small files (old logs, caches) on the SD card", detail)
    if pct < 15:
        return warn("disk", f"disk space low: {text}", REMEDY_DISK, detail)
    if ctx.cfg is not None:
        max_size = ctx.cfg.buffer["max_size"]
        used = sum(f.stat().st_size for f in ctx.state_dir.glob("buffer*") if f.is_file()) \
            if ctx.state_dir.is_dir() else 0
        if max_size - used > free:
            return warn("disk", f"{text}: less than [buffer].max_size ({_fmt_bytes(max_size)})",
                        f"lower [buffer].max_size below {_fmt_bytes(free + used)} or free space", detail)
    return ok("disk", text, detail)


# ---------------------------------------------------------------- power and temperature
_NOW = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}


def check_power(ctx: DiagContext) -> Result:
    p = ctx.path(THROTTLED_PATH)
    try:
        raw = p.read_text().strip()
    except FileNotFoundError:
        return skip("power", "no firmware throttle flags here (not a Raspberry Pi?)",
                    detail=f"{ctx.shown(p)} does not exist")
    except OSError as e:
        return warn("power", f"cannot read {ctx.shown(p)}: {e.strerror}", "run diag as root (sudo)")
    try:
        flags = int(raw, 16) if raw.lower().startswith("0x") else int(raw, 0)
    except ValueError:
        return warn("power", f"unreadable throttle flags {raw!r}", "update the Pi firmware")
    now = [name for bit, name in _NOW.items() if flags & (1 << bit)]
    past = [name for bit, name in _NOW.items() if flags & (1 << (bit + 16))]
    text = f"flags 0x{flags:x}"
    if flags & 1:
        return fail("power", f"under-voltage NOW ({', '.join(now)}; {text})", REMEDY_POWER,
                    detail=f"since boot: {', '.join(past) or 'nothing'}")
    if now:
        remedy = REMEDY_HOT if flags & 0b1010 and not flags & 0b0100 else REMEDY_POWER + "; " + REMEDY_HOT
        return warn("power", f"{', '.join(now)} now ({text})", remedy)
    if flags & (1 << 16):
        return warn("power", f"under-voltage occurred since boot, not now ({text})", REMEDY_POWER,
                    detail=f"since boot: {', '.join(past)}")
    if past:
        return warn("power", f"since boot: {', '.join(past)} ({text})", REMEDY_HOT)
    return ok("power", f"no under-voltage or throttling now or since boot ({text})")


def check_cpu_temp(ctx: DiagContext) -> Result:
    p = ctx.path(THERMAL_PATH)
    try:
        temp = int(p.read_text().strip()) / 1000.0
    except FileNotFoundError:
        return skip("cpu_temp", "no CPU temperature sensor here", detail=f"{ctx.shown(p)} does not exist")
    except (OSError, ValueError) as e:
        return warn("cpu_temp", f"cannot read {ctx.shown(p)}: {e}", "run diag as root (sudo)")
    if temp >= 80:
        return fail("cpu_temp", f"CPU at {temp:.1f} °C: the firmware throttles from 80 °C", REMEDY_HOT)
    if temp >= 70:
        return warn("cpu_temp", f"CPU at {temp:.1f} °C, close to throttling (80 °C)", REMEDY_HOT)
    return ok("cpu_temp", f"CPU at {temp:.1f} °C")


# ---------------------------------------------------------------- clock
def check_clock(ctx: DiagContext) -> Result:
    from node import clock

    flag = ctx.path(TIMESYNC_FLAG)
    # under a training/test root only the flag file counts, never this machine's kernel state
    synced = clock.is_synchronized(paths=[str(flag)], kernel=not ctx.explicit_root)
    if synced is None and ctx.explicit_root:
        synced = False
    now = ctx.wall()
    if synced:
        how = "systemd-timesyncd" if flag.exists() else "kernel NTP state"
        return ok("clock", f"synchronized ({how}); now {fmt_time(now)}")
    lkg_ms = clock.last_known_good_time(ctx.state_dir)
    state = "not synchronized" if synced is False else "synchronization state unknown"
    if lkg_ms is None:
        return warn("clock", f"{state}; no last known good time recorded: the clock may be arbitrarily "
                    f"wrong (it reads {fmt_time(now)})", REMEDY_CLOCK)
    lkg = lkg_ms / 1000.0
    if now < lkg:
        return fail("clock", f"{state} and {fmt_age(lkg - now)} BEHIND the last known good time "
                    f"{fmt_time(lkg)}: it reads {fmt_time(now)}", REMEDY_CLOCK)
    return warn("clock", f"{state}; last known good time {fmt_time(lkg)}, {fmt_age(now - lkg)} before "
                f"the clock's {fmt_time(now)}; it may be behind by as long as the node was off",
                REMEDY_CLOCK)


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
        return warn("service", f"systemctl did not answer: {e}", "check systemd: systemctl status")
    info = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    if out.returncode != 0 or not info:
        return warn("service", f"systemctl show failed: {out.stderr.strip() or out.returncode}",
                    "check systemd: systemctl status")
    journal = f"see why: journalctl -u {SERVICE_NAME} -n 50"
    if info.get("LoadState") == "not-found":
        return fail("service", f"{SERVICE_NAME}.service is not installed",
                    "install the unit: sudo cp deploy/systemd/streetnode.service /etc/systemd/system/ && "
                    "sudo systemctl enable --now streetnode")
    active, sub = info.get("ActiveState", "?"), info.get("SubState", "?")
    if active != "active":
        return fail("service", f"daemon not running ({active}/{sub})",
                    f"sudo systemctl restart {SERVICE_NAME}; {journal}")
    restarts = int(info.get("NRestarts", "0") or 0)
    since = info.get("ActiveEnterTimestamp", "")
    if restarts:
        return warn("service", f"daemon running (pid {info.get('MainPID')}) but restarted {restarts} times; "
                    f"up since {since}", journal)
    return ok("service", f"daemon running (pid {info.get('MainPID')}) since {since}, no restarts")


STATE_FRESH_S = 30.0  # the agent rewrites its state file every few seconds


def _service_from_state_file(ctx: DiagContext) -> Result:
    from node.agent import STATE_FILE, read_state

    state = read_state(ctx.state_dir)
    if state is None:
        return skip("service", "systemctl not available (not booted with systemd) and no daemon "
                    f"state file in {ctx.state_dir}: daemon state unknown")
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
        return ok("service", f"systemctl not available; daemon running (pid {pid}), state file updated "
                  f"{fmt_age(age)} ago")
    return fail("service", f"systemctl not available; daemon not running: {where} last updated "
                f"{fmt_age(age)} ago", "start it: sudo systemctl start streetnode (or `streetnode run`)")
