"""Placeholder of branch fleet, so v0009_fleet has no hole while steps 5-8 land from other
branches: delete this file when they are on main (the lead renumbers at merge)."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    pass
