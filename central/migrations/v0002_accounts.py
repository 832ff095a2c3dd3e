"""Operator accounts, API tokens and console sessions (central/auth.py): authenticated reads.

Secrets are stored hashed only: passwords with scrypt (``password_hash`` is self-describing:
``scrypt$n$r$p$salt$hash``), tokens and session ids (256 random bits) with SHA-256."""

from __future__ import annotations

from central.migrations import Tx

TABLES = [
    """CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_ms BIGINT NOT NULL,
        last_used_ms BIGINT)""",
    """CREATE TABLE sessions (
        id_sha256 TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        created_ms BIGINT NOT NULL,
        last_used_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL)""",
    "CREATE INDEX sessions_by_expiry ON sessions (expires_ms)",
]


def up(tx: Tx, dialect: str) -> None:
    for statement in TABLES:
        tx.execute(statement)
