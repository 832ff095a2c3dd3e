"""The real receiver on loopback for benchmarks: ``with receiver(url, {node: key}) as (url, store)``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from central.server import serve_in_thread
from central.store import Store, open_store


@contextlib.contextmanager
def receiver(db_url: str, nodes: dict[str, bytes]) -> Iterator[tuple[str, Store]]:
    store = open_store(db_url)
    try:
        for node_id, key in nodes.items():
            store.add_node(node_id, key, int(time.time() * 1000))
        url, stop = serve_in_thread(store)
        try:
            yield url, store
        finally:
            stop()
    finally:
        store.close()
