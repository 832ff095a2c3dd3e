"""Versioned schema migrations, one numbered step per change, for SQLite and PostgreSQL.

A step is a module ``vNNNN_what.py`` in this package with a docstring (what and why) and
``up(tx, dialect)``: ``tx.execute(sql, params)`` runs one statement (``?`` placeholders, both
backends), ``dialect`` is ``"sqlite"`` or ``"postgresql"`` for the rare statement that differs.
`migrate` applies every step newer than the database's ``schema_version``, in order, in the same
transaction as the version rows, under a lock (PostgreSQL: an advisory lock per schema; SQLite:
``BEGIN IMMEDIATE``), so concurrent starts are safe and a failed step changes nothing.
A database whose version is newer than the newest step here is refused (`SchemaTooNew`).
How to add a step: docs/central.md, "Schema migrations".
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

_STEP_FILE = re.compile(r"v(\d{4})_([a-z0-9_]+)\.py")

VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                 "name TEXT NOT NULL, applied_ms BIGINT NOT NULL)")


class MigrationError(Exception):
    """The schema cannot be brought to this code's version."""


class SchemaTooNew(MigrationError):
    """The database was migrated by a newer streetnode-central than this one."""


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    up: Callable[[Tx, str], None]


def steps() -> list[Step]:
    """Every step of this package, by version; versions must run 1, 2, 3... without holes."""
    found: list[Step] = []
    for entry in importlib.resources.files(__name__).iterdir():
        m = _STEP_FILE.fullmatch(entry.name)
        if m:
            module = importlib.import_module(f"{__name__}.{entry.name[:-3]}")
            found.append(Step(int(m.group(1)), m.group(2), module.up))
    found.sort(key=lambda s: s.version)
    for expected, step in enumerate(found, start=1):
        if step.version != expected:
            raise MigrationError(f"central/migrations: step v{step.version:04d}_{step.name} where "
                                 f"v{expected:04d} was expected (two steps with one number, or a hole)")
    return found


def latest_version() -> int:
    return len(steps())


def current_version(tx: Tx) -> int:
    tx.execute("SELECT MAX(version) FROM schema_version")
    row = tx.fetchall()[0]
    return 0 if row[0] is None else int(row[0])


def migrate(tx: Tx, dialect: str, now_ms: int) -> list[Step]:
    """Apply the missing steps inside the caller's (locked, write) transaction; returns those applied.

    A round-1 database (tables, no ``schema_version``) is version 0: step 1 recreates nothing
    (``IF NOT EXISTS``) and the later steps upgrade it in place.
    """
    tx.execute(VERSION_TABLE)
    all_steps = steps()
    version = current_version(tx)
    if version > len(all_steps):
        raise SchemaTooNew(f"the database schema is version {version}, newer than this "
                           f"streetnode-central knows ({len(all_steps)}): upgrade streetnode-central, "
                           "or use another --db")
    applied = []
    for step in all_steps[version:]:
        step.up(tx, dialect)
        tx.execute("INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                   (step.version, step.name, now_ms))
        applied.append(step)
    return applied
