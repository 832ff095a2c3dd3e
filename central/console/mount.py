"""`build_console(ctx, config)`: the console's routers and its read connections, for `create_app`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from central.console import api
from central.console.config import ConsoleConfig
from central.console.queries import ConsoleReads
from central.context import AppContext

CONSOLE_POOL_SIZE = 4  # read connections of the console (the SensorThings API has its own)


def build_console(ctx: AppContext, config: ConsoleConfig) -> tuple[list[APIRouter], Any]:
    """(routers to include, the `ReadDb` to close when the app stops)."""
    from central.sta.db import ReadDb  # imported here: central/sta/model.py imports drivers.quality

    db = ReadDb.for_store(ctx.store, pool_size=CONSOLE_POOL_SIZE)
    reads = ConsoleReads(db)
    return [api.router(ctx, reads, config)], db
