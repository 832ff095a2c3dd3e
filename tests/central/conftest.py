"""Stores for the contract tests: SQLite on tmp_path, PostgreSQL on the local server; the receiver
served in a thread over one (modules that need it served otherwise define their own ``central``)."""

from __future__ import annotations

import os
import uuid

import pytest

from central.server import serve_in_thread
from central.store import Store, open_store
from tests.central.helpers import KEY, NODE, now_ms, read_token

PG_URL = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_reachable() -> str | None:
    """None when the local PostgreSQL server answers, else the reason."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as e:  # any failure means: skip with the reason
        return f"PostgreSQL at {PG_URL} unreachable: {type(e).__name__}: {e}".strip()


@pytest.fixture
def pg_url():
    """A URL with a fresh schema, dropped afterwards."""
    reason = pg_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"sn_test_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request):
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def store(store_url) -> Store:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture
def central(store):
    """The receiver in a thread over ``store``, NODE registered: (url, store, read-token headers)."""
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store)
    yield url, store, read_token(store)
    stop()
