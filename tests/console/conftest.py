"""The console's tests run on both stores (the fixtures of tests/central) over a real server."""

from __future__ import annotations

import pytest

from central.server import serve_in_thread
from tests.central.conftest import pg_url, sqlite_url, store, store_url  # noqa: F401  (fixtures)
from tests.central.helpers import read_token
from tests.console.nodes import add_nodes


@pytest.fixture
def central(store):  # noqa: F811  (the fixture above)
    """(base URL, store, read headers) of a receiver with nodes pole-1 and pole-2 registered."""
    add_nodes(store, ["pole-1", "pole-2"])
    url, stop = serve_in_thread(store)
    yield url, store, read_token(store)
    stop()
