"""Placeholder of branch fleet so that v0009_fleet has no hole while steps 6-8 land from other
branches: delete this file when a real step 7 is on main."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    pass
