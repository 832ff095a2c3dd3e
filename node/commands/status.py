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
from node.i18n import N_, _, english, integer, number, set_timezone


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=_("show backlog, uploads, sensors, clock and storm state"),
                       description=_("Show the node's state (works whether the daemon runs or not)."))
    p.add_argument("--json", action="store_true", help=_("machine-readable output (always in English)"))
    p.set_defaults(func=status_cmd)


# words the daemon's state file uses, as a technician reads them
LED_STATES = {"ok": N_("ok"), "off": N_("off"), "fault": N_("fault"), "buffering": N_("buffering"),
              "identify": N_("identify")}
SENSOR_STATES = {"ok": N_("ok"), "fault": N_("fault"), "no_data": N_("no data"), "pending": N_("pending")}


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
        "numbering": _numbering(cfg, st),
    }
    return out


def _numbering(cfg: config.Config, st: dict[str, Any]) -> dict[str, Any]:
    """#20: the buffer's epoch and what happened to its numbering; a copied card."""
    from node.commands.provision import copy_report
    from node.identity import local_identity

    buf = st.get("buffer") if isinstance(st.get("buffer"), dict) else {}
    up = st.get("upload") or {}
    return {"epoch": buf.get("epoch"), "buffer_id": buf.get("buffer_id"),
            "rolled_back_at_start": buf.get("rolled_back"), "lost_at_start": buf.get("lost"),
            "conflicts": up.get("conflicts", 0), "rollbacks": up.get("rollbacks", 0),
            "identity_clashes": up.get("identity_clashes", 0), "last_collision": up.get("last_collision"),
            "copied": copy_report(cfg, local_identity())}


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
    units = ((_("{n}d"), 86400), (_("{n}h"), 3600), (_("{n}m"), 60))
    for unit, n in units:
        if s >= n:
            return unit.format(n=number(s / n, 1))
    return _("{n}s").format(n=number(s, 0))


def render(info: dict[str, Any]) -> str:
    d, b, u = info["daemon"], info["backlog"], info["upload"]
    now = time.time()
    led = _(LED_STATES.get(info["led"], info["led"]))
    if d["running"]:
        head = _("node {node}: daemon running (pid {pid}), status {led}").format(
            node=info["node_id"], pid=d["pid"], led=led)
    else:
        head = _("node {node}: daemon stopped, status {led}").format(node=info["node_id"], led=led)
    lines = [head]
    if "error" in b:
        lines.append(_("backlog: {error}").format(error=b["error"]))
    else:
        lines.append(_("backlog: {readings} readings, {bytes} bytes, oldest {oldest}; gaps {gaps}, "
                       "incidents {incidents}").format(
            readings=integer(b.get("readings", 0)), bytes=integer(b.get("bytes", 0)),
            oldest=_fmt_age(b.get("oldest_age_s")), gaps=integer(b.get("gaps", 0)),
            incidents=integer(b.get("incidents", 0))))
    if not u.get("enabled"):
        lines.append(_("upload: no central configured (buffer only)"))
    else:
        def ago(t: Any) -> str:
            return _("never") if not t else _("{age} ago").format(age=_fmt_age(now - float(t)))
        attempt, success = ago(u.get("last_attempt_at")), ago(u.get("last_success_at"))
        if u.get("last_error"):
            lines.append(_("upload: last attempt {attempt}, last success {success}, error: {error}").format(
                attempt=attempt, success=success, error=u["last_error"]))
        else:
            lines.append(_("upload: last attempt {attempt}, last success {success}").format(
                attempt=attempt, success=success))
    for s in info["sensors"]:
        state = _(SENSOR_STATES.get(s["state"], s["state"]))
        if s.get("state") == "fault":
            lines.append(_("sensor {name} ({type}): {state} ({error}, retry in {retry}s)").format(
                name=s["name"], type=s["type"], state=state, error=s["error"], retry=s.get("retry_in_s")))
        else:
            lines.append(_("sensor {name} ({type}): {state}").format(name=s["name"], type=s["type"],
                                                                      state=state))
    lines += _numbering_lines(info.get("numbering") or {}, now)
    c = info["clock"]
    corr = c.get("last_correction")
    sync = {True: _("synchronized"), False: _("not synchronized")}.get(c.get("synced_now"),
                                                                         _("sync unknown"))
    if corr:
        lines.append(_("clock: {sync}, last correction {offset} ms ({source})").format(
            sync=sync, offset=f"{corr['offset_ms']:+d}", source=corr["source"]))
    else:
        lines.append(_("clock: {sync}").format(sync=sync))
    if c.get("state") == "suspect":
        off_s = float(c.get("offset_ms") or 0) / 1000
        if off_s > 0:
            text = _("clock: SUSPECT: it claims synchronization but is {off} behind the central's time "
                     "(bound {bound}); readings follow the central's time, flagged clock_corrected")
        else:
            text = _("clock: SUSPECT: it claims synchronization but is {off} ahead of the central's time "
                     "(bound {bound}); readings follow the central's time, flagged clock_corrected")
        lines.append(text.format(off=_fmt_age(abs(off_s)), bound=_fmt_age(c.get("suspect_s"))))
    s = info["storm"]
    if s.get("active"):
        lines.append(_("storm mode: ON ({reasons})").format(reasons=", ".join(s.get("reasons", []))))
    else:
        lines.append(_("storm mode: off"))
    for a in info.get("alarms", []):
        output = "" if a.get("output") else ", OUTPUT UNAVAILABLE"
        lines.append(f"alarm {a['name']} (GPIO{a['pin']}): {'ON' if a.get('on') else 'off'}, "
                     f"{a['channel']} {a.get('value')} (on at >= {a['on_at']:g}, "
                     f"off below {a['off_below']:g}){output}")
    lines += _config_lines(info.get("config") or {})
    return "\n".join(lines)


COLLISION_KINDS = {"identity_clash": N_("another device numbers like this one"),
                   "buffer_rollback": N_("the buffer rolled back")}


def _numbering_lines(n: dict[str, Any], now: float) -> list[str]:
    from node.commands.provision import copy_lines

    lines = []
    counts = (n.get("conflicts") or 0, n.get("rollbacks") or 0, n.get("identity_clashes") or 0)
    epoch = n.get("epoch") if n.get("epoch") is not None else "-"
    if any(counts):
        lines.append(_("numbering: epoch {epoch}; since the daemon started {conflicts} conflicting "
                       "readings, {rollbacks} rollbacks, {clashes} identity clashes").format(
            epoch=epoch, conflicts=integer(counts[0]), rollbacks=integer(counts[1]),
            clashes=integer(counts[2])))
    else:
        lines.append(_("numbering: epoch {epoch}, no conflicts").format(epoch=epoch))
    last = n.get("last_collision")
    if isinstance(last, dict):
        kind = COLLISION_KINDS.get(str(last.get("kind")))
        lines.append(_("last conflict {age} ago in epoch {epoch} ({why}): {count} readings moved to "
                       "epoch {new_epoch}").format(
            age=_fmt_age(now - float(last.get("at") or now)), epoch=last.get("epoch"),
            why=_(kind) if kind else last.get("kind"), count=integer(last.get("moved") or 0),
            new_epoch=last.get("new_epoch")))
    if n.get("rolled_back_at_start"):
        lines.append(_("buffer: it had rolled back when the daemon started (the card lost writes); a new "
                       "epoch started and the central was told"))
    if n.get("lost_at_start"):
        lines.append(_("buffer: the file of the earlier epoch was missing or unusable when the daemon "
                       "started; a new epoch started and the central was told"))
    lines += [_("warning: {text}").format(text=t) for t in copy_lines(n.get("copied") or {})]
    return lines


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
    set_timezone(cfg.node["timezone"])
    if args.json:  # a JSON document never changes with the language
        with english():
            info = collect(cfg)
        json.dump(info, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(render(collect(cfg)))
    return 0
