"""Placeholder of branch fleet: step 7 is nobody's yet (console 5, spec 6, alerts 8, fleet 9), so
the steps have no hole once those land; delete it (or give its number away) when a real step 7
comes (the lead renumbers at merge)."""

from __future__ import annotations

from central.migrations import Tx


def up(tx: Tx, dialect: str) -> None:
    pass
