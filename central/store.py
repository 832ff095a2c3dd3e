"""The central's storage interface, implemented by `SqliteStore` and `PgStore`.

Readings are unique by (node, epoch, seq): storing a batch again stores
nothing twice. Accepted request signatures are remembered in the same
transaction as the batch, so a replay is refused even after a restart.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from central.migrations import MigrationError, SchemaTooNew  # noqa: F401  (callers catch them from here)
from node.model import Gap, Incident
from node.protocol import IngestBatch

T = TypeVar("T")
BUSY: Any = type("Busy", (), {"__repr__": lambda self: "BUSY", "__bool__": lambda self: False})()
"""What ``transaction(..., wait=False)`` returns when another transaction held the store."""


class StoreError(Exception):
    """The store cannot be opened or used."""


class UnknownNode(StoreError, KeyError):
    pass


class NodeExists(StoreError, ValueError):
    pass


class Replay(StoreError):
    """This request signature was already accepted."""


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    gaps: int
    incidents: int
    conflicts: int = 0  # readings whose (node, epoch, seq) was stored with other content (not stored)
    conflict_seqs: tuple[int, ...] = ()  # their seqs, ascending, at most MAX_CONFLICT_SEQS
    high_seq: int | None = None  # the highest seq stored of (node, the batch's epoch), after it
    max_epoch: int | None = None  # the highest non-volatile epoch of the node, after it

    def as_dict(self) -> dict[str, Any]:
        """The answer's store fields, in the documented order (docs/protocol.md, "Responses")."""
        return {"stored": self.stored, "duplicates": self.duplicates, "conflicts": self.conflicts,
                "conflict_seqs": list(self.conflict_seqs), "gaps": self.gaps, "incidents": self.incidents,
                "high_seq": self.high_seq, "max_epoch": self.max_epoch}


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    created_ms: int
    last_seen_ms: int | None
    health: dict[str, Any] | None
    readings: int
    gaps: int
    missing_readings: int  # sum of the gaps' counts
    incidents: int
    conflicts: int = 0  # readings refused because their (epoch, seq) was stored with other content
    identities: int = 0  # distinct (hw_serial, machine_id, buffer_id) the node's health has shown


@dataclass(frozen=True)
class StoredReading:
    node_id: str
    epoch: int
    seq: int
    channel: str
    unit: str
    value: float | None
    flags: int
    wall_ms: int
    boot_ms: int
    boot_id: str
    received_ms: int


READING_COLUMNS = ("node_id", "epoch", "seq", "channel", "unit", "value", "flags", "wall_ms", "boot_ms",
                   "boot_id", "received_ms")


class Store(abc.ABC):
    """One contract for every backend (see tests/central/test_store_contract.py)."""

    @abc.abstractmethod
    def create_schema(self) -> None:
        """Bring the schema to this code's version (central/migrations); raises `SchemaTooNew`."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def transaction(self, fn: Callable[[Any], T], *, write: bool = False, wait: bool = True) -> T:
        """``fn(tx)`` in one transaction; ``tx.execute(sql, params)`` with ``?`` placeholders
        (central.store_sql.Tx). What area modules (auth, console, alerts...) use for their tables.
        ``wait=False``: return `BUSY` at once, not running ``fn``, if another transaction is running."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read-only statement on a read connection: never waits for a write transaction, and
        bounded in time and connections (central/readpool.py). What area modules use for lookups."""

    # ---- nodes and keys
    @abc.abstractmethod
    def add_node(self, node_id: str, key: bytes, now_ms: int) -> None:
        """Raises `NodeExists`."""

    @abc.abstractmethod
    def set_key(self, node_id: str, key: bytes) -> None:
        """Replace a node's key; raises `UnknownNode`."""

    @abc.abstractmethod
    def node_key(self, node_id: str) -> bytes | None: ...

    @abc.abstractmethod
    def list_nodes(self, node_id: str | None = None, *, after: str | None = None,
                   limit: int | None = None) -> list[NodeInfo]:
        """Every node (or just ``node_id``) ordered by id, from the node after ``after``, at most
        ``limit``. The counts come from counters the ingest transaction keeps (``node_stats``)."""

    # ---- ingest
    @abc.abstractmethod
    def ingest(self, batch: IngestBatch, *, signature: str, expires_ms: int, now_ms: int) -> IngestResult:
        """Store a decoded batch and remember its signature, in one transaction.

        Raises `Replay` (storing nothing) when the signature was already accepted.
        """

    @abc.abstractmethod
    def accept_signature(self, node_id: str, signature: str, *, expires_ms: int, now_ms: int) -> None:
        """Remember a signature (for requests without a batch, e.g. ping); raises `Replay`."""

    # ---- reading back
    @abc.abstractmethod
    def readings(self, node_id: str, *, channel: str | None = None, since_ms: int | None = None,
                 until_ms: int | None = None, limit: int | None = None,
                 after: tuple[int, int, int] | None = None,
                 newest_first: bool = False) -> list[StoredReading]:
        """Readings by wall time (since inclusive, until exclusive), then epoch and seq; with
        ``newest_first`` in the reverse order (so ``limit=1`` is the newest). With ``after`` =
        (wall_ms, epoch, seq) of a reading, only those strictly after it in the order asked for
        (a page's cursor: readings sharing a wall time are neither repeated nor skipped). Each
        reading has the unit it was stored under (a later unit change does not relabel it)."""

    @abc.abstractmethod
    def count_readings(self, node_id: str | None = None) -> int: ...

    @abc.abstractmethod
    def seqs(self, node_id: str, epoch: int) -> list[int]:
        """Every stored sequence number of one node epoch, ascending (each exactly once)."""

    @abc.abstractmethod
    def gaps(self, node_id: str) -> list[Gap]: ...

    @abc.abstractmethod
    def incidents(self, node_id: str) -> list[Incident]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


def default_db_url() -> str:
    """sqlite:///<state dir>/central.db; the state dir is $STREETNODE_CENTRAL_STATE or ./."""
    state = os.environ.get("STREETNODE_CENTRAL_STATE") or os.environ.get("STATE_DIRECTORY") or "."
    return f"sqlite:///{os.path.abspath(os.path.join(state, 'central.db'))}"


def open_store(url: str) -> Store:
    """Open (and create the schema of) ``sqlite:///path`` or ``postgresql://...``.

    SQLite URLs follow SQLAlchemy: ``sqlite:///central.db`` is relative to the working
    directory, ``sqlite:////var/lib/x/central.db`` (four slashes) is absolute.
    A ``schema=NAME`` query parameter on a PostgreSQL URL puts the tables in that schema.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from central.store_sqlite import SqliteStore

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path or path.endswith("/"):
            raise StoreError(f"--db {url}: expected sqlite:///relative/central.db or "
                             "sqlite:////absolute/central.db")
        store: Store = SqliteStore(os.path.abspath(path))
    elif scheme in ("postgresql", "postgres"):
        from central.store_pg import PgStore

        store = PgStore(url)
    else:
        raise StoreError(f"--db {url!r}: expected sqlite:///path or postgresql://...")
    store.create_schema()
    return store
