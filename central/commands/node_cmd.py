"""`streetnode-central node add|list|rotate`: node identities and their keys."""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time

from central.store import NodeExists, Store, StoreError, UnknownNode, default_db_url, open_store
from node.errors import EX_UNAVAILABLE, ConfigError, StreetnodeError
from node.protocol import format_key

_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CentralStoreError(StreetnodeError):
    exit_code = EX_UNAVAILABLE


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", default=None,
                   help="sqlite:///path/central.db or postgresql://... (default: central.db in "
                   "$STREETNODE_CENTRAL_STATE or the current directory)")


def open_db(url: str | None) -> Store:
    try:
        return open_store(url or default_db_url())
    except StoreError as e:
        raise CentralStoreError(str(e)) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="add, list or re-key nodes",
                       description="Manage node identities. A key is printed once, when created.")
    nsub = p.add_subparsers(dest="node_cmd", required=True, metavar="ACTION")
    add = nsub.add_parser("add", help="create a node and print its key once")
    add.add_argument("node_id", metavar="ID")
    add_db_option(add)
    add.set_defaults(func=add_cmd)
    rotate = nsub.add_parser("rotate", help="give a node a new key and print it once")
    rotate.add_argument("node_id", metavar="ID")
    add_db_option(rotate)
    rotate.set_defaults(func=rotate_cmd)
    ls = nsub.add_parser("list", help="list nodes with last seen time and counts")
    add_db_option(ls)
    ls.set_defaults(func=list_cmd)


def _check_id(node_id: str) -> None:
    if not _NODE_ID_RE.match(node_id):
        raise ConfigError(f"ID {node_id!r}: expected 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")


def _print_key(node_id: str, key: bytes, verb: str) -> None:
    print(format_key(key))
    print(f"streetnode-central: {verb} node {node_id}; the key above is shown only now: write it to the "
          "node's key_file (chmod 600)", file=sys.stderr)


def add_cmd(args: argparse.Namespace) -> int:
    _check_id(args.node_id)
    key = secrets.token_bytes(32)
    store = open_db(args.db)
    try:
        store.add_node(args.node_id, key, int(time.time() * 1000))
    except NodeExists as e:
        raise ConfigError(f"ID {args.node_id!r}: {e}") from None
    finally:
        store.close()
    _print_key(args.node_id, key, "added")
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
    _print_key(args.node_id, key, "re-keyed")
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    store = open_db(args.db)
    try:
        nodes = store.list_nodes()
    finally:
        store.close()
    print(f"{'node':<20} {'last seen (UTC)':<20} {'readings':>10} {'backlog':>8} {'gaps':>5} {'missing':>8} "
          f"{'incidents':>9}")
    for n in nodes:
        seen = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(n.last_seen_ms / 1000))
                if n.last_seen_ms else "never")
        backlog = (n.health or {}).get("backlog_readings")
        print(f"{n.node_id:<20} {seen:<20} {n.readings:>10} {'-' if backlog is None else backlog:>8} "
              f"{n.gaps:>5} {n.missing_readings:>8} {n.incidents:>9}")
    return 0
