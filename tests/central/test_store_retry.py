"""PostgreSQL rolling an ingest back (deadlock, serialization failure) is retried a bounded number
of times inside the store; past that, and when the database goes away, the node gets a 503 in our
JSON shape with no database text, and the central logs one line (#20)."""

from __future__ import annotations

import logging

import psycopg
import pytest

from central.server import serve_in_thread
from central.store import StoreError, open_store
from central.store_sql import ROLLBACK_RETRIES
from tests.central.helpers import KEY, NODE, body_of, make_batch, post

RAISE = "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected (test)' USING ERRCODE = '{code}'; END $$"


@pytest.fixture
def pg_store(pg_url):
    store = open_store(pg_url)
    yield store
    store.close()


@pytest.mark.parametrize("code", ["40P01", "40001"])  # deadlock_detected, serialization_failure
def test_a_rolled_back_transaction_runs_again(pg_store, code):
    attempts = []

    def fn(cur):
        attempts.append(1)
        cur.execute("INSERT INTO nodes (node_id, key_hex, created_ms) VALUES (%s, 'k', 0)",
                    (f"n{len(attempts)}",))
        if len(attempts) <= 2:
            cur.execute(RAISE.format(code=code))  # what the server answers the loser of a deadlock
        return len(attempts)

    assert pg_store._write(fn, retry=True) == 3
    assert [n.node_id for n in pg_store.list_nodes()] == ["n3"]  # the failed attempts left nothing


def test_the_retries_are_bounded(pg_store, caplog):
    attempts = []

    def fn(cur):
        attempts.append(1)
        cur.execute(RAISE.format(code="40P01"))

    with caplog.at_level(logging.WARNING, "streetnode.central"), pytest.raises(StoreError) as e:
        pg_store._write(fn, retry=True)
    assert len(attempts) == ROLLBACK_RETRIES + 1
    assert str(e.value).startswith(f"storage busy: DeadlockDetected after {ROLLBACK_RETRIES} retries")
    retried = [r for r in caplog.records if "rolled back by the database" in r.getMessage()]
    assert len(retried) == ROLLBACK_RETRIES
    with pytest.raises(psycopg.errors.DeadlockDetected):  # not retried where nobody asked for it
        pg_store._run(fn, write=True, rollback_is_error=False)


def test_a_lost_database_is_a_503_without_its_text_and_one_log_line(pg_url, caplog):
    store = open_store(pg_url)
    store.add_node(NODE, KEY, 0)
    url, stop = serve_in_thread(store)
    try:
        assert post(url, body_of(make_batch(range(10)))).status_code == 200
        with psycopg.connect(pg_url.split("?")[0], autocommit=True) as admin:  # the server drops us
            admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
        with caplog.at_level(logging.WARNING, "streetnode.central"):
            r = post(url, body_of(make_batch(range(10, 20))))
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.json() == {"error": "unavailable", "message": "storage unavailable; retry later"}
        logged = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("503")]
        assert len(logged) == 1 and "/v1/ingest" in logged[0] and "\n" not in logged[0]
        assert post(url, body_of(make_batch(range(10, 20)))).status_code == 200  # reconnected
    finally:
        stop()
        store.close()


def test_a_guard_503_is_logged_once_per_flood(store, caplog):
    """The guard's `503 overloaded` (requests in progress over the cap) is logged, one line; a flood
    of them is summed (one line a minute, with how many more) rather than one line each."""
    import dataclasses
    import time

    from central.http import SHED_QUIET
    from tests.central.test_limits import SMALL, connect, head, start

    SHED_QUIET.forget()
    url, stop = start(store, dataclasses.replace(SMALL, max_requests=2, max_connections=50))
    try:
        stalled = [connect(url) for _ in range(2)]
        for sock in stalled:
            sock.sendall(head(length=50_000) + b"\x1f\x8b")
        time.sleep(0.3)
        with caplog.at_level(logging.WARNING, "streetnode.central"):
            answers = [post(url, body_of(make_batch(range(3)))) for _ in range(3)]
        assert [r.status_code for r in answers] == [503] * 3
        logged = [r.getMessage() for r in caplog.records if r.name == "streetnode.central.shed"]
        assert logged == ["503 overloaded (guard): receiver overloaded (too many requests in progress); "
                          "retry after 2 s"]
    finally:
        stop()
