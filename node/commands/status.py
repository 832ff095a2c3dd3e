"""`streetnode status [--json]`: the node's state without disturbing the daemon.

Reads the daemon's state file (written atomically every few seconds) and the
buffer read-only; works when the daemon is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from node import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show backlog, uploads, sensors, clock and storm state",
                       description="Show the node's state (works whether the daemon runs or not).")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=status_cmd)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True


def collect(cfg: config.Config) -> dict[str, Any]:
    from node.agent import read_state
    from node.clock import is_synchronized, last_known_good_time

    now = time.time()
    st = read_state(cfg.state_dir) or {}
    running = bool(st) and _alive(st.get("pid")) and now - float(st.get("updated_at") or 0) < 60
    out: dict[str, Any] = {
        "node_id": cfg.node["id"], "state_dir": str(cfg.state_dir), "daemon": {
            "running": running, "pid": st.get("pid") if running else None,
            "state_age_s": None if not st else round(now - float(st.get("updated_at") or 0), 1)},
        "backlog": _backlog(cfg),
        "upload": st.get("upload") or {"enabled": bool(cfg.central["url"])},
        "sensors": st.get("sensors") or [],
        "storm": st.get("storm") or {"active": False},
        "alarms": st.get("alarms") or [],
        "clock": {**(st.get("clock") or {}), "synced_now": is_synchronized(),
                  "last_known_good_ms": last_known_good_time(cfg.state_dir)},
        "led": st.get("led") if running else "off",
        "counters": st.get("counters") or {},
        "config": _config(cfg, st if running else {}),
    }
    return out


def _config(cfg: config.Config, st: dict[str, Any]) -> dict[str, Any]:
    """Applied configuration: version, origin, hash, health check, last failure (docs/fleet.md)."""
    from node.fleet import read_report

    if st.get("fleet"):
        return st["fleet"]
    return {**read_report(cfg.state_dir), "config_hash": None, "source": cfg.source}


def _backlog(cfg: config.Config) -> dict[str, Any]:
    path = cfg.state_dir / "buffer.db"
    if not path.exists():
        return {"readings": 0, "bytes": 0, "oldest_age_s": None, "note": "no buffer yet"}
    from node.buffer import SqliteBuffer
    from node.errors import StorageError

    try:
        st = SqliteBuffer.inspect(path)
    except StorageError as e:
        return {"error": str(e)}
    oldest = None if st.oldest_wall_ms is None else round(time.time() - st.oldest_wall_ms / 1000, 1)
    return {"readings": st.readings, "bytes": st.bytes_on_disk, "oldest_age_s": oldest,
            "epoch": st.epoch, "last_seq": st.last_seq, "gaps": st.gaps_pending,
            "incidents": st.incidents_pending}


def _fmt_age(s: Any) -> str:
    if s is None:
        return "-"
    s = float(s)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.1f}{unit}"
    return f"{s:.0f}s"


def render(info: dict[str, Any]) -> str:
    d, b, u = info["daemon"], info["backlog"], info["upload"]
    now = time.time()
    daemon = f"running (pid {d['pid']})" if d["running"] else "stopped"
    lines = [f"node {info['node_id']}: daemon {daemon}, status {info['led']}"]
    if "error" in b:
        lines.append(f"backlog: {b['error']}")
    else:
        lines.append(f"backlog: {b.get('readings', 0)} readings, {b.get('bytes', 0)} bytes, "
                     f"oldest {_fmt_age(b.get('oldest_age_s'))}; gaps {b.get('gaps', 0)}, "
                     f"incidents {b.get('incidents', 0)}")
    if not u.get("enabled"):
        lines.append("upload: no central configured (buffer only)")
    else:
        def ago(t: Any) -> str:
            return "never" if not t else f"{_fmt_age(now - float(t))} ago"
        err = f", error: {u['last_error']}" if u.get("last_error") else ""
        lines.append(f"upload: last attempt {ago(u.get('last_attempt_at'))}, last success "
                     f"{ago(u.get('last_success_at'))}{err}")
    for s in info["sensors"]:
        extra = f" ({s['error']}, retry in {s.get('retry_in_s')}s)" if s.get("state") == "fault" else ""
        lines.append(f"sensor {s['name']} ({s['type']}): {s['state']}{extra}")
    c = info["clock"]
    corr = c.get("last_correction")
    sync = {True: "synchronized", False: "not synchronized"}.get(c.get("synced_now"), "sync unknown")
    lines.append(f"clock: {sync}"
                 + (f", last correction {corr['offset_ms']:+d} ms ({corr['source']})" if corr else ""))
    s = info["storm"]
    reasons = ", ".join(s.get("reasons", []))
    lines.append("storm mode: " + (f"ON ({reasons})" if s.get("active") else "off"))
    for a in info.get("alarms", []):
        output = "" if a.get("output") else ", OUTPUT UNAVAILABLE"
        lines.append(f"alarm {a['name']} (GPIO{a['pin']}): {'ON' if a.get('on') else 'off'}, "
                     f"{a['channel']} {a.get('value')} (on at >= {a['on_at']:g}, "
                     f"off below {a['off_below']:g}){output}")
    lines += _config_lines(info.get("config") or {})
    return "\n".join(lines)


def _config_lines(c: dict[str, Any]) -> list[str]:
    if c.get("config_origin") == "central":
        text = f"config: version {c.get('config_version')} from the central"
    else:
        text = "config: the local file only"
    if c.get("config_hash"):
        text += f", hash {c['config_hash']}"
    if c.get("config_state") == "trial":
        text += " (health check running)"
    lines = [text]
    if c.get("config_failed_version"):
        lines.append(f"config failed: {c['config_failed_version']}: {c.get('config_failed_reason')}")
    return lines


def status_cmd(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    info = collect(cfg)
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(render(info))
    return 0
