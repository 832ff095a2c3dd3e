"""Fleet configuration (central/fleet, docs/fleet.md): each node's group, the configuration layers
pushed per group and per node (every version kept, with who, when and what changed), and the
rollouts of a group layer in waves.

A layer version's ``id`` is one number across all layers, so "version 42" names one document."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    id_column = "BIGSERIAL PRIMARY KEY" if dialect == "postgresql" else "INTEGER PRIMARY KEY"
    tx.execute("""CREATE TABLE fleet_groups (
        node_id TEXT PRIMARY KEY,
        group_name TEXT NOT NULL,
        updated_ms BIGINT NOT NULL)""")
    tx.execute("CREATE INDEX fleet_groups_by_group ON fleet_groups (group_name, node_id)")
    tx.execute(f"""CREATE TABLE fleet_layers (
        id {id_column},
        scope TEXT NOT NULL,
        target TEXT NOT NULL,
        toml TEXT NOT NULL,
        layer_hash TEXT NOT NULL,
        author TEXT NOT NULL,
        note TEXT NOT NULL,
        created_ms BIGINT NOT NULL)""")
    tx.execute("CREATE INDEX fleet_layers_by_target ON fleet_layers (scope, target, id)")
    tx.execute("""CREATE TABLE fleet_rollouts (
        layer_id BIGINT PRIMARY KEY,
        group_name TEXT NOT NULL,
        from_id BIGINT,
        canaries TEXT NOT NULL,
        healthy TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL)""")
    tx.execute("CREATE INDEX fleet_rollouts_by_group ON fleet_rollouts (group_name, layer_id)")
