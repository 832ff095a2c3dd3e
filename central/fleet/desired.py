"""What configuration each node should run, and how a rollout moves on as its canaries report.

A node's *desired* configuration is its group's layer (the version the rollout lets it have) with
its own layer over it. Its *version* is a label naming both, ``g12+n15`` (``g12``, ``n15``; None:
no layer), so a node can tell a new combination from the one it runs, and the central can tell
which group version a node's report is about. Nodes report in the health of every batch
(docs/protocol.md "Health keys"): ``config_version``, ``config_state`` (``trial`` until the health
check passed, then ``ok``), ``config_failed_version`` and ``config_failed_reason``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from central.fleet import db
from central.fleet.db import Layer, Rollout
from node.remote_keys import layer_hash, merge

log = logging.getLogger("streetnode.central")

_LABEL_RE = re.compile(r"(?:g(\d+))?(?:\+?n(\d+))?")


@dataclass(frozen=True)
class Desired:
    version: str | None  # None: the central sets nothing for this node
    hash: str | None  # layer_hash of the merged layers (the node checks it)
    layers: list[Layer] = field(default_factory=list)  # group first, then node

    def as_wire(self) -> dict[str, Any]:
        return {"version": self.version, "hash": self.hash, "layers": [x.as_wire() for x in self.layers]}


def label(group_id: int | None, node_id: int | None) -> str | None:
    pairs = (("g", group_id), ("n", node_id))
    parts = [f"{prefix}{number}" for prefix, number in pairs if number is not None]
    return "+".join(parts) or None


def parse_label(text: Any) -> tuple[int | None, int | None]:
    """``"g12+n15"`` -> (12, 15); anything else -> (None, None)."""
    m = _LABEL_RE.fullmatch(text) if isinstance(text, str) and text else None
    if m is None:
        return None, None
    return (None if m.group(1) is None else int(m.group(1)), None if m.group(2) is None else int(m.group(2)))


def group_layer_for(tx: Any, node_id: str, group: str | None) -> Layer | None:
    """The group layer version this node may have now (a rollout in its canary wave, or stopped,
    keeps the others on the version before)."""
    if group is None:
        return None
    current = db.current_layer(tx, "group", group)
    if current is None:
        return None
    rollout = db.latest_rollout(tx, group)
    if rollout is None or rollout.layer_id != current.id or rollout.state == "complete":
        return current
    if rollout.state == "canary" and node_id in rollout.canaries:
        return current
    return db.layer(tx, rollout.from_id) if rollout.from_id is not None else None


def desired(tx: Any, node_id: str) -> Desired:
    group_layer = group_layer_for(tx, node_id, db.group_of(tx, node_id))
    node_layer = db.current_layer(tx, "node", node_id)
    layers = [x for x in (group_layer, node_layer) if x is not None]
    if not layers:
        return Desired(None, None)
    merged: dict[str, Any] = {}
    for x in layers:
        merged = merge(merged, x.doc())
    version = label(group_layer.id if group_layer else None, node_layer.id if node_layer else None)
    return Desired(version, layer_hash(merged), layers)


def observe(tx: Any, node_id: str, health: dict[str, Any], now_ms: int) -> Rollout | None:
    """Move the group's rollout on from one canary's report; returns the rollout if it changed."""
    group = db.group_of(tx, node_id)
    rollout = db.latest_rollout(tx, group) if group else None
    if rollout is None or rollout.state != "canary" or node_id not in rollout.canaries:
        return None
    failed_group, _ = parse_label(health.get("config_failed_version"))
    applied_group, _ = parse_label(health.get("config_version"))
    if failed_group == rollout.layer_id:
        reason = f"node {node_id}: {health.get('config_failed_reason') or 'health check failed'}"
        db.update_rollout(tx, rollout.layer_id, healthy=rollout.healthy, state="stopped", reason=reason,
                          now_ms=now_ms)
        log.warning("rollout of group %s version %d stopped: %s", group, rollout.layer_id, reason)
        return rollout
    if applied_group == rollout.layer_id and health.get("config_state") == "ok" \
            and node_id not in rollout.healthy:
        healthy = sorted({*rollout.healthy, node_id})
        done = set(rollout.canaries) <= set(healthy)
        db.update_rollout(tx, rollout.layer_id, healthy=healthy, state="complete" if done else "canary",
                          reason=None, now_ms=now_ms)
        if done:
            log.info("rollout of group %s version %d: canaries healthy, applying to all", group,
                     rollout.layer_id)
        return rollout
    return None


def on_ingest(store: Any, node_id: str, health: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
    """After a stored batch: move a rollout on, and the desired ``{"version", "hash"}`` for the
    answer (None when the central sets nothing). Never fails the ingest: a fleet table the store
    cannot read leaves the key out (logged)."""

    def run(tx: Any) -> dict[str, Any] | None:
        observe(tx, node_id, health, now_ms)
        want = desired(tx, node_id)
        return None if want.version is None else {"version": want.version, "hash": want.hash}

    reports = any(health.get(k) for k in ("config_version", "config_failed_version"))
    try:
        return store.transaction(run, write=reports)
    except Exception as e:  # the batch is stored; the desired version can wait for the next one
        log.warning("fleet: desired configuration of %s not computed: %s", node_id, e)
        return None
