"""`streetnode-central node add|list|rotate|set-group`: node identities, their keys and groups."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

from central.commands.config_cmd import applied_column
from central.commands.db import add_db_option, open_db
from central.fleet.db import set_group
from central.fleet.push import check_name
from central.store import NodeExists, UnknownNode
from node.errors import ConfigError
from node.protocol import format_key, is_node_id


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="add, list or re-key nodes",
                       description="Manage node identities. A key is printed once, when created.")
    nsub = p.add_subparsers(dest="node_cmd", required=True, metavar="ACTION")
    add = nsub.add_parser("add", help="create a node and print its key once")
    add.add_argument("node_id", metavar="ID")
    add.add_argument("--url", metavar="URL", default=None,
                     help="the central's public URL, for the install command printed with the key "
                     "(default: $STREETNODE_CENTRAL_URL)")
    add.add_argument("--group", metavar="G", help="the node's group for fleet configuration (docs/fleet.md)")
    add_db_option(add)
    add.set_defaults(func=add_cmd)
    group = nsub.add_parser("set-group", help="put a node in a group for fleet configuration (docs/fleet.md)")
    group.add_argument("node_id", metavar="ID")
    group.add_argument("group", metavar="GROUP", nargs="?", help="the group (omit with --none)")
    group.add_argument("--none", action="store_true", help="take the node out of its group")
    add_db_option(group)
    group.set_defaults(func=set_group_cmd)
    rotate = nsub.add_parser("rotate", help="give a node a new key and print it once")
    rotate.add_argument("node_id", metavar="ID")
    rotate.add_argument("--url", metavar="URL", default=None, help="as for 'node add'")
    add_db_option(rotate)
    rotate.set_defaults(func=rotate_cmd)
    ls = nsub.add_parser("list", help="list nodes with last seen time and counts",
                         description="Nodes with last seen time and counts. conflicts: readings refused "
                         "because their (epoch, seq) was stored with other content (a rolled-back buffer, "
                         "or two devices with one node id); ids: distinct hardware identities "
                         "(hw_serial, machine_id, buffer_id) seen (docs/central.md).")
    add_db_option(ls)
    ls.set_defaults(func=list_cmd)


def _check_id(node_id: str) -> None:
    if not is_node_id(node_id):
        raise ConfigError(f"ID {node_id!r}: expected 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")


def install_command(node_id: str, url: str | None) -> str:
    """The line a technician runs on the Pi (deploy/provision.md); the key comes from a file, so it
    is never in a command line, a shell history or a process list."""
    central = url or os.environ.get("STREETNODE_CENTRAL_URL") or "https://CENTRAL.EXAMPLE"
    return f"sudo deploy/install.sh --node-id {node_id} --central-url {central} --key-file {node_id}.key"


def _print_key(node_id: str, key: bytes, verb: str, url: str | None) -> None:
    print(format_key(key), flush=True)  # stdout only: redirect it to a file (mode 0600 under umask 077)
    print(f"streetnode-central: {verb} node {node_id}; its key (64 hex digits, on stdout) is shown only "
          f"now. Save it with '... > {node_id}.key', copy the file to the Pi and run there:",
          file=sys.stderr)
    print(f"  {install_command(node_id, url)}", file=sys.stderr)


def add_cmd(args: argparse.Namespace) -> int:
    _check_id(args.node_id)
    if args.group is not None:
        check_name(args.group, "--group")
    key = secrets.token_bytes(32)
    store = open_db(args.db)
    try:
        store.add_node(args.node_id, key, int(time.time() * 1000))
        if args.group is not None:
            store.transaction(lambda tx: set_group(tx, args.node_id, args.group, int(time.time() * 1000)),
                              write=True)
    except NodeExists as e:
        raise ConfigError(f"ID {args.node_id!r}: {e}") from None
    finally:
        store.close()
    _print_key(args.node_id, key, "added", args.url)
    return 0


def rotate_cmd(args: argparse.Namespace) -> int:
    _check_id(args.node_id)
    key = secrets.token_bytes(32)
    store = open_db(args.db)
    try:
        store.set_key(args.node_id, key)
    except UnknownNode:
        raise ConfigError(f"ID {args.node_id!r}: no such node (add it with 'node add')") from None
    finally:
        store.close()
    _print_key(args.node_id, key, "re-keyed", args.url)
    return 0


def set_group_cmd(args: argparse.Namespace) -> int:
    _check_id(args.node_id)
    if args.none == (args.group is not None):
        raise ConfigError("GROUP: give a group, or --none to take the node out of its group")
    group = None if args.none else check_name(args.group, "GROUP")
    store = open_db(args.db)
    try:
        if store.node_key(args.node_id) is None:
            raise ConfigError(f"ID {args.node_id!r}: no such node (add it with 'node add')")
        store.transaction(lambda tx: set_group(tx, args.node_id, group, int(time.time() * 1000)), write=True)
    finally:
        store.close()
    print(f"node {args.node_id}: " + (f"group {group}" if group else "in no group"))
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    store = open_db(args.db)
    try:
        nodes = store.list_nodes()
    finally:
        store.close()
    print(f"{'node':<20} {'last seen (UTC)':<20} {'readings':>10} {'backlog':>8} {'gaps':>5} {'missing':>8} "
          f"{'incidents':>9} {'conflicts':>9} {'ids':>3} config")
    for n in nodes:
        seen = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(n.last_seen_ms / 1000))
                if n.last_seen_ms else "never")
        backlog = (n.health or {}).get("backlog_readings")
        print(f"{n.node_id:<20} {seen:<20} {n.readings:>10} {'-' if backlog is None else backlog:>8} "
              f"{n.gaps:>5} {n.missing_readings:>8} {n.incidents:>9} {n.conflicts:>9} {n.identities:>3} "
              f"{applied_column(n.health)}")
    return 0
