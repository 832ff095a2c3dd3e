"""Every read is bounded: statement deadlines on both databases, entities per response."""

from __future__ import annotations

import pytest

from central.sta.db import ReadDb
from central.sta.errors import TooExpensive
from central.sta.service import StaService
from central.store import open_store

FOREVER = {"sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
           "postgresql": "SELECT pg_sleep(30)"}


@pytest.fixture
def read_db(central):
    db = ReadDb.for_store(central.store)
    yield db
    db.close()


def test_a_statement_past_its_deadline_is_stopped(read_db):
    with pytest.raises(TooExpensive, match="longer than its"):
        read_db.fetch(FOREVER[read_db.dialect.name], [], read_db.deadline(0.3))
    assert read_db.fetch("SELECT 1 AS one", [], read_db.deadline(5)) == [{"one": 1}]  # still usable


def test_entities_per_response_are_bounded(read_db):
    service = StaService(read_db, max_entities=50)
    body, _ = service.get("Things", [("$expand", "Datastreams")], "http://x/sta/v1.1")
    assert len(body["value"]) == 2
    with pytest.raises(TooExpensive, match="more than 50 entities"):
        service.get("Things", [("$expand", "Datastreams($expand=Observations($top=100))")], "http://x/sta/v1.1")


def test_reads_do_not_wait_for_the_writer(tmp_path):
    """A write transaction held open on SQLite does not block a SensorThings read (WAL reader)."""
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    db = ReadDb.for_store(store)
    writer = store._connection()
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO nodes (node_id, key_hex, created_ms) VALUES ('n', '00', 1)")
    try:
        assert db.fetch("SELECT COUNT(*) AS n FROM nodes", [], db.deadline(2)) == [{"n": 0}]
    finally:
        writer.execute("ROLLBACK")
        db.close()
        store.close()
