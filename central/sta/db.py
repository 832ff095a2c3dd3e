"""Read-only connections for the SensorThings API: the central's `ReadPool` (central/readpool.py)
with this area's errors and rows as dicts.

SQLite (WAL) readers never wait for an upload's transaction, and a slow STA query never holds the
store's lock. A statement past its deadline becomes a `TooExpensive` (400) naming the bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from central.readpool import DEFAULT_POOL_SIZE, DEFAULT_READ_TIMEOUT_S, ReadPool
from central.sta.errors import TooExpensive, Unavailable
from central.sta.model import Dialect, PgDialect

__all__ = ["DEFAULT_POOL_SIZE", "DEFAULT_REQUEST_TIMEOUT_S", "ReadDb"]

DEFAULT_REQUEST_TIMEOUT_S = DEFAULT_READ_TIMEOUT_S


class ReadDb(ReadPool):
    """A small pool of read-only connections; ``fetch`` returns rows as dicts."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, **kwargs: Any) -> None:
        super().__init__(connect, **kwargs)
        self.dialect = dialect

    @classmethod
    def for_store(cls, store: Any, **kwargs: Any) -> ReadDb:
        """A pool on the same database as ``store`` (a `SqliteStore` or `PgStore`)."""
        dialect = PgDialect() if store.dialect == "postgresql" else Dialect()
        return cls(lambda: store.read_connector()(), dialect, **kwargs)  # connects on first use

    def busy(self) -> Exception:
        return Unavailable("all SensorThings read connections are busy; retry shortly")

    def too_slow(self) -> Exception:
        return TooExpensive(f"the request took longer than its {self.timeout_s:g} s bound; narrow it "
                            "with $filter (e.g. on phenomenonTime), a smaller $top or fewer $expand")

    def unavailable(self, reason: str) -> Exception:
        return Unavailable(f"database unavailable: {reason}")

    def fetch(self, sql: str, params: Sequence[Any], deadline: float) -> list[dict[str, Any]]:
        names, rows = self.rows(sql, params, deadline)
        return [dict(zip(names, row, strict=True)) for row in rows]
