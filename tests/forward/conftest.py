"""Forwarder fixtures: a central filled through signed uploads, on SQLite or PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from central.server import serve_in_thread
from central.store import open_store
from tests.forward.broker import SHARED, OwnBroker, wait_port
from tests.sta.conftest import Central, _db_url, _drop


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path_factory):
    url, schema = _db_url(request.param, tmp_path_factory)
    yield url
    _drop(schema)


@pytest.fixture
def central(db_url):
    """A running in-process central (its store) with nodes but no readings yet."""
    from tests.sta.data import KEYS, now_ms

    store = open_store(db_url)
    for node, key in KEYS.items():
        store.add_node(node, key, now_ms())
    base, stop = serve_in_thread(store)
    try:
        yield Central(base, base + "/sta/v1.1", store, {})
    finally:
        stop()
        store.close()


@pytest.fixture
def prefix():
    return f"sntest/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def broker_port(tmp_path):
    """The machine's Mosquitto on 127.0.0.1:1883; if it is not running, one of our own (said so)."""
    try:
        wait_port(SHARED[1], 2.0)
        yield SHARED[1]
        return
    except AssertionError:
        print("tests/forward: no Mosquitto on 127.0.0.1:1883; using one of our own on a free port")
    broker = OwnBroker(tmp_path / "shared")
    (tmp_path / "shared").mkdir()
    broker.start()
    yield broker.port
    broker.stop()


@pytest.fixture
def own_broker(tmp_path):
    broker = OwnBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()
