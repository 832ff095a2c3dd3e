"""The ``--db`` option every subcommand shares, and opening the store with CLI errors."""

from __future__ import annotations

import argparse

from central.store import SchemaTooNew, Store, StoreError, default_db_url, open_store
from node.errors import EX_CONFIG, EX_UNAVAILABLE, StreetnodeError


class CentralStoreError(StreetnodeError):
    """The database cannot be reached or opened (exit 69)."""

    exit_code = EX_UNAVAILABLE


class SchemaTooNewError(StreetnodeError):
    """The database was migrated by a newer streetnode-central (exit 78: not fixed by retrying)."""

    exit_code = EX_CONFIG


def add_db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", default=None,
                   help="sqlite:///path/central.db or postgresql://... (default: central.db in "
                   "$STREETNODE_CENTRAL_STATE or the current directory)")


def open_db(url: str | None) -> Store:
    """Open (and migrate) the store; a one-line error with exit 69 or 78 when that fails."""
    try:
        return open_store(url or default_db_url())
    except SchemaTooNew as e:
        raise SchemaTooNewError(str(e)) from None
    except StoreError as e:
        raise CentralStoreError(str(e)) from None
