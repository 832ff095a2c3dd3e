"""A read-only OGC SensorThings API v1.1 over the central's store (see docs/sta.md).

`build_sta(store)` gives the router to mount; the pieces: `options`/`filter` parse the query,
`model` maps tables to entities, `sqlbuild` writes the SQL, `db` runs it on read-only connections
with a deadline, `service` resolves paths and renders, `router` is the HTTP edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def build_sta(store: Any, *, dependencies: Sequence[Any] = ()) -> tuple[Any, Any]:
    """(APIRouter, ReadDb) for ``store``; close the ReadDb when the app stops."""
    from central.sta.db import ReadDb
    from central.sta.router import sta_router
    from central.sta.service import StaService

    db = ReadDb.for_store(store)
    return sta_router(StaService(db), dependencies=dependencies), db
