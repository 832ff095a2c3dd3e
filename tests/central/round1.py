"""The round-1 central schema (as released, before versioned migrations), frozen here so that the
upgrade tests build a database exactly as round 1 left it, whatever central/migrations becomes."""

from __future__ import annotations

ROUND1_DDL = [
    """CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, key_hex TEXT NOT NULL,
        created_ms BIGINT NOT NULL, last_seen_ms BIGINT, health_json TEXT, health_ms BIGINT)""",
    """CREATE TABLE IF NOT EXISTS channels (node_id TEXT NOT NULL, channel TEXT NOT NULL,
        unit TEXT NOT NULL, PRIMARY KEY (node_id, channel))""",
    """CREATE TABLE IF NOT EXISTS readings (node_id TEXT NOT NULL, epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL, channel TEXT NOT NULL, value DOUBLE PRECISION, flags BIGINT NOT NULL,
        wall_ms BIGINT NOT NULL, boot_ms BIGINT NOT NULL, boot_id TEXT NOT NULL,
        received_ms BIGINT NOT NULL, PRIMARY KEY (node_id, epoch, seq))""",
    "CREATE INDEX IF NOT EXISTS readings_by_time ON readings (node_id, wall_ms)",
    """CREATE TABLE IF NOT EXISTS gaps (node_id TEXT NOT NULL, epoch BIGINT NOT NULL,
        first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, count BIGINT NOT NULL,
        first_wall_ms BIGINT, last_wall_ms BIGINT, reason TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (node_id, epoch, first_seq, reason))""",
    """CREATE TABLE IF NOT EXISTS incidents (node_id TEXT NOT NULL, epoch BIGINT NOT NULL,
        incident_id BIGINT NOT NULL, wall_ms BIGINT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
        count BIGINT, received_ms BIGINT NOT NULL, PRIMARY KEY (node_id, epoch, incident_id))""",
    """CREATE TABLE IF NOT EXISTS signatures (node_id TEXT NOT NULL, signature TEXT NOT NULL,
        expires_ms BIGINT NOT NULL, PRIMARY KEY (node_id, signature))""",
    "CREATE INDEX IF NOT EXISTS signatures_by_expiry ON signatures (expires_ms)",
]

NODE, KEY_HEX = "pole-old", "11" * 32
READINGS = [(NODE, 3, seq, "weather.temperature_c", 20.0 + seq / 100, 0, 1_764_000_000_000 + seq * 10_000,
             seq * 10_000, "boot-r1", 1_764_000_100_000) for seq in range(50)]


def populate(conn, placeholder: str) -> None:
    """Round-1 tables and data through a DB-API connection (``?`` for sqlite3, ``%s`` for psycopg)."""
    p = placeholder
    cur = conn.cursor()
    for statement in ROUND1_DDL:
        cur.execute(statement)
    cur.execute(f"INSERT INTO nodes (node_id, key_hex, created_ms, last_seen_ms, health_json, health_ms) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})",
                (NODE, KEY_HEX, 1_763_000_000_000, 1_764_000_100_000, '{"backlog_readings": 7}',
                 1_764_000_100_000))
    cur.execute(f"INSERT INTO channels VALUES ({p}, {p}, {p})", (NODE, "weather.temperature_c", "°C"))
    cur.executemany(f"INSERT INTO readings VALUES ({', '.join([p] * 10)})", READINGS)
    cur.execute(f"INSERT INTO gaps VALUES ({', '.join([p] * 9)})",
                (NODE, 3, 100, 109, 10, None, None, "evicted_size", 1_764_000_100_000))
    conn.commit()
