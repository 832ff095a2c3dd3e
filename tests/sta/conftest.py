"""SensorThings fixtures: a central on SQLite or PostgreSQL (fresh schema), filled through signed uploads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from central.server import serve_in_thread
from central.store import Store, open_store
from tests.central.conftest import PG_URL, pg_reachable
from tests.central.helpers import read_token
from tests.sta.data import fill


@dataclass
class Central:
    url: str  # http://127.0.0.1:PORT
    sta: str  # .../sta/v1.1
    store: Store
    sent: dict
    auth: dict = field(default_factory=dict)  # headers with a read token


def _db_url(kind: str, tmp_path_factory) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sta') / 'central.db'}", None
    reason = pg_reachable()
    if reason:
        pytest.skip(reason)
    schema = f"sn_sta_{uuid.uuid4().hex[:12]}"
    return f"{PG_URL}?schema={schema}", schema


def _drop(schema: str | None) -> None:
    if schema:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_kind(request):
    return request.param


@pytest.fixture(scope="module")
def central(db_kind, tmp_path_factory):
    """One filled central per backend, shared by a module's read-only tests."""
    url, schema = _db_url(db_kind, tmp_path_factory)
    store = open_store(url)
    base, stop = serve_in_thread(store)
    try:
        yield Central(base, base + "/sta/v1.1", store, fill(store, base), read_token(store, "sta-tests"))
    finally:
        stop()
        store.close()
        _drop(schema)


@pytest.fixture
def fresh_central(db_kind, tmp_path_factory):
    """A central of its own, for tests that write while they read."""
    url, schema = _db_url(db_kind, tmp_path_factory)
    store = open_store(url)
    base, stop = serve_in_thread(store)
    try:
        yield Central(base, base + "/sta/v1.1", store, fill(store, base, cycles=40),
                      read_token(store, "sta-tests"))
    finally:
        stop()
        store.close()
        _drop(schema)
