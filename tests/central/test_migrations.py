"""Versioned schema migrations (central/migrations) on SQLite and PostgreSQL: a round-1 database is
upgraded in place with its data intact, a newer database is refused, concurrent starts are safe."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest

from central import migrations
from central.store import SchemaTooNew, open_store
from tests.central import round1
from tests.conftest import ROOT


def round1_database(url: str) -> None:
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        round1.populate(conn, "?")
        conn.close()
        return
    import psycopg

    from central.store_pg import split_schema

    base, schema = split_schema(url)
    with psycopg.connect(base) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        round1.populate(conn, "%s")


def test_steps_are_numbered_one_by_one():
    steps = migrations.steps()
    assert [s.version for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0].name == "baseline" and migrations.latest_version() == len(steps) >= 2


def test_fresh_database_gets_every_step(store):
    assert store.schema_version() == migrations.latest_version()
    rows = store.transaction(lambda tx: tx.execute(
        "SELECT version, name FROM schema_version ORDER BY version").fetchall())
    assert [(int(v), n) for v, n in rows] == [(s.version, s.name) for s in migrations.steps()]


def test_round1_database_upgraded_in_place_with_its_readings(store_url):
    round1_database(store_url)
    store = open_store(store_url)
    try:
        assert store.schema_version() == migrations.latest_version()
        node = round1.NODE
        assert store.node_key(node) == bytes.fromhex(round1.KEY_HEX)
        got = store.readings(node)
        assert [(r.seq, r.value, r.unit, r.wall_ms, r.boot_id) for r in got] == [
            (row[2], row[4], "°C", row[6], row[8]) for row in round1.READINGS]
        (info,) = store.list_nodes(node)
        assert (info.readings, info.gaps, info.missing_readings, info.health) == (
            50, 1, 10, {"backlog_readings": 7})
        from central.accounts import Accounts  # a round-2 table works on the upgraded database

        secret = Accounts(store).add_token("ops", "read")
        assert Accounts(store).token_principal(secret).name == "ops"
    finally:
        store.close()
    again = open_store(store_url)  # a second start changes nothing
    try:
        assert again.schema_version() == migrations.latest_version() and again.count_readings() == 50
    finally:
        again.close()


def test_newer_database_is_refused(store_url, cli_env):
    store = open_store(store_url)
    newer = migrations.latest_version() + 1
    store.transaction(lambda tx: tx.execute(
        "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, 'from_the_future', 0)", (newer,)),
        write=True)
    store.close()
    with pytest.raises(SchemaTooNew, match=f"version {newer}, newer than this"):
        open_store(store_url)
    r = subprocess.run([sys.executable, "-m", "central.cli", "node", "list", "--db", store_url],
                       capture_output=True, text=True, env=cli_env, cwd=ROOT, timeout=60)
    assert r.returncode == 78, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "upgrade streetnode-central" in r.stderr
    assert "Traceback" not in r.stderr


def test_concurrent_starts_migrate_once(store_url):
    starters, errors, stores = 4, [], []
    barrier = threading.Barrier(starters)

    def start() -> None:
        barrier.wait()
        try:
            stores.append(open_store(store_url))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert errors == [] and len(stores) == starters
        rows = stores[0].transaction(lambda tx: tx.execute(
            "SELECT version FROM schema_version ORDER BY version").fetchall())
        assert [int(r[0]) for r in rows] == list(range(1, migrations.latest_version() + 1))
    finally:
        for s in stores:
            s.close()


def test_a_failing_step_changes_nothing(sqlite_url, monkeypatch):
    real = migrations.steps()

    def broken(tx, dialect):
        tx.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("step failed")

    extra = migrations.Step(len(real) + 1, "broken", broken)
    monkeypatch.setattr(migrations, "steps", lambda: [*real, extra])
    with pytest.raises(RuntimeError, match="step failed"):
        open_store(sqlite_url)
    monkeypatch.undo()
    conn = sqlite3.connect(sqlite_url[len("sqlite:///"):])
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "half_done" not in tables and "readings" not in tables  # one transaction: all or nothing
