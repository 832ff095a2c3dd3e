"""`streetnode-central config push|show|history|rollback|status`: fleet configuration (docs/fleet.md).

A layer is pushed for one node (``--node ID``) or a group (``--group G``; a node's group is set by
``node add --group`` or ``node set-group``). It is checked with the node's own code first: a key
the node would refuse is refused here, with the node's one-line message and exit 78.
"""

from __future__ import annotations

import argparse
import getpass
import os
import time
from typing import Any

from central.commands.db import add_db_option, open_db
from central.fleet import db, push
from central.fleet.desired import desired, parse_label
from central.fleet.status import fleet_status, rollout_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="push, show, roll back fleet configuration",
                       description="Configuration layers the nodes fetch from the central (docs/fleet.md).")
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    ps = csub.add_parser("push", help="check a TOML layer with the node's code and store it as a new version")
    _target(ps)
    ps.add_argument("file", metavar="FILE", help="the layer (TOML): only keys the central may set")
    ps.add_argument("--canary", metavar="PCT", help="with --group: apply to PCT of the group first (e.g. "
                    "5%%), the rest when those report healthy; a failure stops the rollout")
    ps.add_argument("--check", action="store_true", help="check the file and show the diff; store nothing "
                    "(exit 78 with the node's messages when it would be refused)")
    _author(ps)
    ps.set_defaults(func=push_cmd)
    show = csub.add_parser("show", help="the layer in force (with --node: what the node should run and "
                           "what it reports)")
    _target(show)
    show.add_argument("--version", type=int, metavar="N", help="an older version of the layer")
    show.set_defaults(func=show_cmd)
    hist = csub.add_parser("history", help="every version: who, when, what changed")
    _target(hist)
    hist.add_argument("--diff", action="store_true", help="print each version's diff")
    hist.set_defaults(func=history_cmd)
    rb = csub.add_parser("rollback", help="push an earlier version again (default: the one before)")
    _target(rb)
    rb.add_argument("--to", type=int, metavar="N", help="the version to go back to")
    rb.add_argument("--canary", metavar="PCT", help="as for push (default: every node at once)")
    _author(rb)
    rb.set_defaults(func=rollback_cmd)
    st = csub.add_parser("status", help="per node: desired and applied version, health check, failures; "
                         "rollouts")
    st.add_argument("--group", metavar="G", help="only this group")
    add_db_option(st)
    st.set_defaults(func=status_cmd)


def _target(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--node", metavar="ID")
    which.add_argument("--group", metavar="G")
    add_db_option(p)


def _author(p: argparse.ArgumentParser) -> None:
    p.add_argument("--author", metavar="NAME", help="who pushes (default: $SUDO_USER or the login name)")


def _scope(args: argparse.Namespace) -> tuple[str, str]:
    if args.node is not None:
        return "node", push.check_name(args.node, "--node")
    return "group", push.check_name(args.group, "--group")


def _who(args: argparse.Namespace) -> str:
    if args.author:
        return args.author
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _when(ms: int | None) -> str:
    return "never" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _report(result: push.Pushed, verb: str) -> None:
    layer = result.layer
    nodes = f"{len(result.members)} node{'s' * (len(result.members) != 1)}"
    print(f"{verb} {layer.scope} {layer.target} version {layer.id} by {layer.author} ({nodes})")
    for line in push.diff(result.previous, layer):
        print(line)
    if result.rollout is not None:
        print(f"rollout: canaries {', '.join(result.rollout.canaries)} first; the rest once they report "
              f"healthy (streetnode-central config status --group {layer.target})")


def push_cmd(args: argparse.Namespace) -> int:
    scope, target = _scope(args)
    canary = push.parse_canary(args.canary)
    text = push.read_layer(args.file)
    store = open_db(args.db)
    try:
        result = push.push(store, scope, target, text, author=_who(args), note=f"push {args.file}",
                           now_ms=int(time.time() * 1000), canary_pct=canary, dry_run=args.check)
    finally:
        store.close()
    if args.check:
        nodes = f"{len(result.members)} node{'s' * (len(result.members) != 1)}"
        print(f"checked: {scope} {target} would accept {args.file} ({nodes}); nothing stored")
        for line in push.diff(result.previous, result.layer):
            print(line)
        return 0
    _report(result, "pushed")
    return 0


def rollback_cmd(args: argparse.Namespace) -> int:
    scope, target = _scope(args)
    canary = push.parse_canary(args.canary)
    store = open_db(args.db)
    try:
        text, old = push.rollback_text(store, scope, target, args.to)
        result = push.push(store, scope, target, text, author=_who(args), note=f"rollback to version {old}",
                           now_ms=int(time.time() * 1000), canary_pct=canary)
    finally:
        store.close()
    _report(result, f"rolled back to version {old}: pushed")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    scope, target = _scope(args)
    store = open_db(args.db)
    try:
        if scope == "group" or args.version is not None:
            _show_layer(store, scope, target, args.version)
        else:
            _show_node(store, target)
    finally:
        store.close()
    return 0


def _header(layer: db.Layer) -> str:
    return f"# {layer.scope} {layer.target} version {layer.id}, {layer.author}, {_when(layer.created_ms)} UTC"


def _show_layer(store: Any, scope: str, target: str, version: int | None) -> None:
    def run(tx: Any) -> tuple[db.Layer | None, db.Rollout | None]:
        found = db.layer(tx, version) if version is not None else db.current_layer(tx, scope, target)
        rollout = db.latest_rollout(tx, target) if scope == "group" else None
        return found, rollout

    layer, rollout = store.transaction(run)
    if layer is None or (layer.scope, layer.target) != (scope, target):
        what = f"version {version} of " if version is not None else ""
        raise push.ConfigError(f"--{scope} {target}: no {what}configuration pushed")
    print(_header(layer))
    print(layer.toml.rstrip("\n"))
    if rollout is not None and rollout.layer_id == layer.id:
        print(f"# rollout: {rollout_line(rollout)}")


def _show_node(store: Any, node_id: str) -> None:
    def run(tx: Any) -> tuple[Any, str | None]:
        return desired(tx, node_id), db.group_of(tx, node_id)

    want, group = store.transaction(run)
    info = next(iter(store.list_nodes(node_id)), None)
    if info is None:
        raise push.ConfigError(f"--node {node_id!r}: no such node")
    health = info.health or {}
    print(f"node {node_id}, group {group or '(none)'}")
    hash_text = f" hash {want.hash}" if want.hash else ""
    print(f"desired: {want.version or '(nothing from the central)'}{hash_text}")
    print(f"applied: {_applied(health)} (reported {_when(info.last_seen_ms)} UTC)")
    if health.get("config_failed_version"):
        print(f"failed:  {health['config_failed_version']}: {health.get('config_failed_reason')}")
    for layer in want.layers:
        print(_header(layer))
        print(layer.toml.rstrip("\n"))


def _applied(health: dict[str, Any]) -> str:
    if not health:
        return "not reported yet"
    version = health.get("config_version")
    origin = health.get("config_origin") or "local"
    state = health.get("config_state")
    text = f"{version or '(local file only)'} origin {origin} hash {health.get('config_hash')}"
    return text + (" (health check running)" if state == "trial" else "")


def history_cmd(args: argparse.Namespace) -> int:
    scope, target = _scope(args)
    store = open_db(args.db)
    try:
        versions = store.transaction(lambda tx: db.history(tx, scope, target))
    finally:
        store.close()
    if not versions:
        print(f"{scope} {target}: no configuration pushed")
        return 0
    print(f"{'version':>7}  {'when (UTC)':<19}  {'who':<12}  {'changed':>7}  note")
    previous = None
    for v in versions:
        lines = push.diff(previous, v)
        changed = sum(1 for line in lines[2:] if line[:1] in "+-")
        print(f"{v.id:>7}  {_when(v.created_ms):<19}  {v.author:<12}  {changed:>7}  {v.note}")
        if args.diff:
            for line in lines:
                print(f"    {line}")
        previous = v
    return 0


def status_cmd(args: argparse.Namespace) -> int:
    group = push.check_name(args.group, "--group") if args.group else None
    store = open_db(args.db)
    try:
        nodes, rollouts = fleet_status(store, group)
    finally:
        store.close()
    print(f"{'node':<16} {'group':<10} {'desired':<12} {'applied':<12} {'state':<8} failed")
    for n in nodes:
        applied = n.applied or ("-" if n.origin is None else "local")
        why = f"{n.failed_version}: {n.failed_reason}" if n.failed_version else ""
        print(f"{n.node_id:<16} {n.group or '-':<10} {n.desired or '-':<12} {applied:<12} {n.state:<8} {why}")
    for r in rollouts:
        print(f"rollout group {r.group} version {r.layer_id}: {rollout_line(r)}")
    return 0


def applied_column(health: dict[str, Any] | None) -> str:
    """What `node list` shows of a node's configuration: version (or local), and a failure."""
    h = health or {}
    if not h:
        return "-"
    text = h.get("config_version") or "local"
    if h.get("config_state") == "trial":
        text += " (checking)"
    failed_group, failed_node = parse_label(h.get("config_failed_version"))
    if failed_group is not None or failed_node is not None:
        text += f" failed {h['config_failed_version']}"
    return text
