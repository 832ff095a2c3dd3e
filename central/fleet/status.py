"""The fleet at a glance: per node what the central wants and what the node reports; the rollouts
in progress. Shared by `streetnode-central config status` and ``GET /v1/config/status``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from central.fleet import db
from central.fleet.desired import desired


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    group: str | None
    desired: str | None  # the version the central wants (None: it sets nothing)
    applied: str | None  # the version the node reports running (None: its own file alone)
    origin: str | None  # "central" or "local"; None: not reported yet
    state: str  # "ok", "trial" (health check running), "pending" (not applied yet), "-" (no report)
    config_hash: str | None
    failed_version: str | None
    failed_reason: str | None
    last_seen_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rollout_line(r: db.Rollout) -> str:
    waiting = [n for n in r.canaries if n not in r.healthy]
    if r.state == "stopped":
        return f"STOPPED after the canary wave: {r.reason}; the others stay on version {r.from_id}"
    if r.state == "complete":
        return f"complete (canaries {', '.join(r.canaries)} healthy)"
    return f"canary wave: waiting for {', '.join(waiting)}; the others stay on version {r.from_id}"


def rollout_dict(r: db.Rollout) -> dict[str, Any]:
    return {"group": r.group, "version": r.layer_id, "from_version": r.from_id, "state": r.state,
            "canaries": r.canaries, "healthy": r.healthy, "reason": r.reason, "summary": rollout_line(r),
            "created_ms": r.created_ms, "updated_ms": r.updated_ms}


def fleet_status(store: Any, group: str | None = None) -> tuple[list[NodeConfig], list[db.Rollout]]:
    """Every node (of ``group``) and the rollouts of the group layers now in force."""
    nodes = store.list_nodes()

    def run(tx: Any) -> tuple[dict[str, str], dict[str, Any], list[db.Rollout]]:
        groups = db.groups(tx)
        chosen = [n for n in nodes if group is None or groups.get(n.node_id) == group]
        current = [r for r in db.rollouts(tx, group)
                   if r.layer_id == getattr(db.current_layer(tx, "group", r.group), "id", None)]
        return groups, {n.node_id: desired(tx, n.node_id).version for n in chosen}, current

    groups, wants, rollouts = store.transaction(run)
    out = []
    for n in nodes:
        if n.node_id not in wants:
            continue
        h = n.health or {}
        want = wants[n.node_id]
        applied = h.get("config_version")
        state = h.get("config_state") or "-"
        if want is not None and applied != want and state != "trial":
            state = "pending"
        out.append(NodeConfig(n.node_id, groups.get(n.node_id), want, applied,
                              h.get("config_origin") or ("local" if h else None), state,
                              h.get("config_hash"), h.get("config_failed_version"),
                              h.get("config_failed_reason"), n.last_seen_ms))
    return out, rollouts
