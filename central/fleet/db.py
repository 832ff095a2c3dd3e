"""The fleet tables (migration 9): groups, layer versions, rollouts. Every function takes the ``tx``
of `Store.transaction`, so a caller can combine several in one transaction."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Any

from node.remote_keys import layer_hash

SCOPES = ("group", "node")
_LAYER_COLUMNS = "id, scope, target, toml, layer_hash, author, note, created_ms"
_ROLLOUT_COLUMNS = "layer_id, group_name, from_id, canaries, healthy, state, reason, created_ms, updated_ms"


@dataclass(frozen=True)
class Layer:
    """One version of a group's or a node's layer: a TOML document the central may set."""

    id: int
    scope: str  # "group" or "node"
    target: str  # the group name or node id
    toml: str
    layer_hash: str
    author: str
    note: str
    created_ms: int

    def doc(self) -> dict[str, Any]:
        return tomllib.loads(self.toml)

    def as_wire(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "target": self.target, "toml": self.toml}


@dataclass(frozen=True)
class Rollout:
    """A group layer version applied in waves: canaries first, the rest when they are healthy."""

    layer_id: int
    group: str
    from_id: int | None  # the group's version before (None: it had none)
    canaries: list[str]
    healthy: list[str]
    state: str  # "canary", "complete" or "stopped"
    reason: str | None
    created_ms: int
    updated_ms: int


def _layer(row: tuple[Any, ...]) -> Layer:
    return Layer(int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]))


def _rollout(row: tuple[Any, ...]) -> Rollout:
    return Rollout(int(row[0]), row[1], None if row[2] is None else int(row[2]), json.loads(row[3]),
                   json.loads(row[4]), row[5], row[6], int(row[7]), int(row[8]))


# ------------------------------------------------------------------ groups
def set_group(tx: Any, node_id: str, group: str | None, now_ms: int) -> None:
    """Put a node in ``group`` (None: in no group)."""
    tx.execute("DELETE FROM fleet_groups WHERE node_id = ?", (node_id,))
    if group is not None:
        tx.execute("INSERT INTO fleet_groups (node_id, group_name, updated_ms) VALUES (?, ?, ?)",
                   (node_id, group, now_ms))


def group_of(tx: Any, node_id: str) -> str | None:
    row = tx.execute("SELECT group_name FROM fleet_groups WHERE node_id = ?", (node_id,)).fetchone()
    return None if row is None else row[0]


def members(tx: Any, group: str) -> list[str]:
    rows = tx.execute("SELECT node_id FROM fleet_groups WHERE group_name = ? ORDER BY node_id",
                      (group,)).fetchall()
    return [r[0] for r in rows]


def groups(tx: Any) -> dict[str, str]:
    """node id -> group, for every node in a group."""
    return {r[0]: r[1] for r in tx.execute("SELECT node_id, group_name FROM fleet_groups").fetchall()}


# ------------------------------------------------------------------ layers
def current_layer(tx: Any, scope: str, target: str) -> Layer | None:
    row = tx.execute(f"SELECT {_LAYER_COLUMNS} FROM fleet_layers WHERE scope = ? AND target = ? "
                     "ORDER BY id DESC LIMIT 1", (scope, target)).fetchone()
    return None if row is None else _layer(row)


def layer(tx: Any, layer_id: int) -> Layer | None:
    row = tx.execute(f"SELECT {_LAYER_COLUMNS} FROM fleet_layers WHERE id = ?", (layer_id,)).fetchone()
    return None if row is None else _layer(row)


def history(tx: Any, scope: str, target: str) -> list[Layer]:
    rows = tx.execute(f"SELECT {_LAYER_COLUMNS} FROM fleet_layers WHERE scope = ? AND target = ? "
                      "ORDER BY id", (scope, target)).fetchall()
    return [_layer(r) for r in rows]


def add_layer(tx: Any, scope: str, target: str, toml: str, *, author: str, note: str,
              now_ms: int) -> Layer:
    """Store a new version (the TOML must parse: callers check it first)."""
    digest = layer_hash(tomllib.loads(toml))
    row = tx.execute("INSERT INTO fleet_layers (scope, target, toml, layer_hash, author, note, created_ms) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                     (scope, target, toml, digest, author, note, now_ms)).fetchone()
    return Layer(int(row[0]), scope, target, toml, digest, author, note, now_ms)


# ------------------------------------------------------------------ rollouts
def add_rollout(tx: Any, layer_id: int, group: str, from_id: int | None, canaries: list[str],
                now_ms: int) -> Rollout:
    tx.execute(f"INSERT INTO fleet_rollouts ({_ROLLOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (layer_id, group, from_id, json.dumps(canaries), "[]", "canary", None, now_ms, now_ms))
    return Rollout(layer_id, group, from_id, canaries, [], "canary", None, now_ms, now_ms)


def latest_rollout(tx: Any, group: str) -> Rollout | None:
    row = tx.execute(f"SELECT {_ROLLOUT_COLUMNS} FROM fleet_rollouts WHERE group_name = ? "
                     "ORDER BY layer_id DESC LIMIT 1", (group,)).fetchone()
    return None if row is None else _rollout(row)


def rollouts(tx: Any, group: str | None = None) -> list[Rollout]:
    where, params = ("WHERE group_name = ? ", (group,)) if group else ("", ())
    rows = tx.execute(f"SELECT {_ROLLOUT_COLUMNS} FROM fleet_rollouts {where}ORDER BY layer_id",
                      params).fetchall()
    return [_rollout(r) for r in rows]


def update_rollout(tx: Any, layer_id: int, *, healthy: list[str], state: str, reason: str | None,
                   now_ms: int) -> None:
    tx.execute("UPDATE fleet_rollouts SET healthy = ?, state = ?, reason = ?, updated_ms = ? "
               "WHERE layer_id = ?", (json.dumps(healthy), state, reason, now_ms, layer_id))
