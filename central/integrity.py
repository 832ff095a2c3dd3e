"""What the ingest transaction checks so that nothing is lost silently (#20; docs/central.md,
"Conflicts and identities"): readings that reuse a stored (node, epoch, seq) with other content
(conflicts), the node's epochs and highest seqs, gaps over a hole whose count the central computes,
and the hardware identities a node id has shown.

Every function takes the ingest transaction (``tx.execute`` with ``?`` placeholders, both stores)
and runs a bounded number of statements per batch, never one per reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.model import Quality
from node.protocol import HOLE_REASONS, MAX_CONFLICT_SEQS, MAX_DETAIL, VOLATILE_EPOCH_MIN

CENTRAL_EPOCH = -1  # the epoch of incidents the central records itself (a node's epochs are >= 0)
CLOCK_BITS = int(Quality.CLOCK_UNSYNCED | Quality.CLOCK_CORRECTED)
IDENTITY_KEYS = ("hw_serial", "machine_id", "buffer_id")
CLASH_WINDOW_MS = 24 * 3600 * 1000  # identities seen within the last day count for a clash
_IN_CHUNK = 500  # seqs per "IN (...)" list when a batch's seqs are sparse
_CONTENT_CHARS = 200

# readings rows as the store builds them (central/store_sql.py)
_SEQ, _CHANNEL, _VALUE, _FLAGS, _WALL, _BOOT_MS, _BOOT_ID = 2, 3, 4, 5, 6, 7, 8


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    @property
    def rowcount(self) -> int: ...


@dataclass
class Sorted:
    """A batch's readings against what is stored: new ones, duplicates, conflicts."""

    new_rows: list[tuple[Any, ...]] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=list)  # (sent, stored)

    @property
    def conflict_seqs(self) -> tuple[int, ...]:
        return tuple(sorted(int(sent[_SEQ]) for sent, _ in self.conflicts)[:MAX_CONFLICT_SEQS])


def _seq_groups(seqs: list[int]) -> list[tuple[str, list[Any]]]:
    """SQL conditions on ``seq`` covering ``seqs`` (sorted): one range when they are dense (a
    batch usually is), else ``IN`` lists of at most `_IN_CHUNK`, so a sparse batch never reads the
    whole epoch between its ends."""
    lo, hi = seqs[0], seqs[-1]
    if hi - lo + 1 <= 2 * len(seqs) + 64:
        return [("seq BETWEEN ? AND ?", [lo, hi])]
    groups = []
    for first in range(0, len(seqs), _IN_CHUNK):
        chunk = seqs[first:first + _IN_CHUNK]
        groups.append((f"seq IN ({', '.join('?' * len(chunk))})", list(chunk)))
    return groups


def stored_readings(tx: Tx, node: str, epoch: int, seqs: Iterable[int]) -> dict[int, tuple[Any, ...]]:
    """{seq: (seq, channel, value, flags, wall_ms, boot_ms, boot_id)} of the stored readings of
    (node, epoch) among ``seqs``: by the (node_id, epoch, seq) index, one statement per group."""
    ordered = sorted(set(seqs))
    found: dict[int, tuple[Any, ...]] = {}
    if not ordered:
        return found
    for condition, params in _seq_groups(ordered):
        tx.execute("SELECT seq, channel, value, flags, wall_ms, boot_ms, boot_id FROM readings "
                   f"WHERE node_id = ? AND epoch = ? AND {condition}", [node, epoch, *params])
        for row in tx.fetchall():
            found[int(row[0])] = row
    return found


def same_sample(sent: tuple[Any, ...], stored: tuple[Any, ...]) -> bool:
    """True when a resent reading is the one stored (a duplicate), False for a conflict.

    Same channel, value, boot id, boot_ms and flags (the clock bits aside), and the same wall time
    unless either copy carries CLOCK_UNSYNCED or CLOCK_CORRECTED: a node that corrected its clock
    between a send whose answer it lost and the resend re-stamps the same sample, which is no
    conflict (the first stored wall time is kept)."""
    _, channel, value, flags, wall_ms, boot_ms, boot_id = stored
    sent_value = sent[_VALUE]
    if sent[_CHANNEL] != channel or sent[_BOOT_ID] != boot_id or int(sent[_BOOT_MS]) != int(boot_ms):
        return False
    if (sent_value is None) != (value is None) or (value is not None and float(sent_value) != float(value)):
        return False
    sent_flags, flags = int(sent[_FLAGS]), int(flags)
    if sent_flags & ~CLOCK_BITS != flags & ~CLOCK_BITS:
        return False
    return int(sent[_WALL]) == int(wall_ms) or bool((sent_flags | flags) & CLOCK_BITS)


def sort_readings(tx: Tx, node: str, epoch: int, rows: list[tuple[Any, ...]]) -> Sorted:
    """Compare a batch's readings (one node and epoch) with the stored ones in bulk."""
    result = Sorted()
    stored = stored_readings(tx, node, epoch, (row[_SEQ] for row in rows))
    for row in rows:
        old = stored.get(int(row[_SEQ]))
        if old is None:
            result.new_rows.append(row)
        elif same_sample(row, old):
            result.duplicates += 1
        else:
            result.conflicts.append((row, old))
    return result


def content(channel: Any, value: Any, flags: Any, wall_ms: Any, boot_ms: Any, boot_id: Any) -> str:
    """A reading in short, for the conflicts table and incident details."""
    text = f"{channel}={value!r} flags={flags} wall_ms={wall_ms} boot={str(boot_id)[:8]}+{boot_ms}"
    return text[:_CONTENT_CHARS]


def _sent_content(row: tuple[Any, ...]) -> str:
    return content(*(row[i] for i in (_CHANNEL, _VALUE, _FLAGS, _WALL, _BOOT_MS, _BOOT_ID)))


def _stored_content(row: tuple[Any, ...]) -> str:
    return content(*row[1:7])


def record_conflicts(tx: Tx, node: str, epoch: int, conflicts: list[tuple[tuple[Any, ...], tuple[Any, ...]]],
                     now_ms: int) -> int:
    """Keep each conflicting key once (first and last seen, times, both contents); returns how many
    keys are new (node_stats.conflicts counts keys, so a resent batch adds nothing)."""
    if not conflicts:
        return 0
    seqs = sorted(int(sent[_SEQ]) for sent, _ in conflicts)
    known: set[int] = set()
    for condition, params in _seq_groups(seqs):
        tx.execute(f"SELECT seq FROM reading_conflicts WHERE node_id = ? AND epoch = ? AND {condition}",
                   [node, epoch, *params])
        known.update(int(r[0]) for r in tx.fetchall())
    new = 0
    for sent, stored in sorted(conflicts, key=lambda c: int(c[0][_SEQ])):  # fixed order: no deadlock
        seq = int(sent[_SEQ])
        if seq in known:
            tx.execute("UPDATE reading_conflicts SET last_seen_ms = ?, times = times + 1 "
                       "WHERE node_id = ? AND epoch = ? AND seq = ?", (now_ms, node, epoch, seq))
            continue
        tx.execute("INSERT INTO reading_conflicts (node_id, epoch, seq, first_seen_ms, last_seen_ms, times, "
                   "stored, sent) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                   (node, epoch, seq, now_ms, now_ms, _stored_content(stored), _sent_content(sent)))
        new += 1
    return new


def conflict_detail(epoch: int, conflicts: list[tuple[tuple[Any, ...], tuple[Any, ...]]]) -> str:
    seqs = sorted(int(sent[_SEQ]) for sent, _ in conflicts)
    sent, stored = min(conflicts, key=lambda c: int(c[0][_SEQ]))
    text = (f"{len(seqs)} readings of epoch {epoch} (seq {seqs[0]}..{seqs[-1]}) differ from the readings "
            f"the central holds under the same seq and were not stored; seq {seqs[0]}: stored "
            f"{_stored_content(stored)}, sent {_sent_content(sent)}")
    return text[:MAX_DETAIL]


def add_incident(tx: Tx, node: str, kind: str, detail: str, count: int | None, now_ms: int) -> None:
    """An incident the central records itself (epoch `CENTRAL_EPOCH`, ids 1, 2, ...; the ingest
    transaction holds the node, so the next id is its own)."""
    tx.execute("SELECT MAX(incident_id) FROM incidents WHERE node_id = ? AND epoch = ?",
               (node, CENTRAL_EPOCH))
    row = tx.fetchone()
    next_id = 1 if row is None or row[0] is None else int(row[0]) + 1
    tx.execute("INSERT INTO incidents (node_id, epoch, incident_id, wall_ms, kind, detail, count, "
               "received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (node, CENTRAL_EPOCH, next_id, now_ms, kind, detail[:MAX_DETAIL], count, now_ms))


def note_epoch(tx: Tx, node: str, epoch: int, new_rows: Sequence[tuple[Any, ...]],
               now_ms: int) -> tuple[int | None, int | None]:
    """Record that the node sent a batch of ``epoch`` (storing ``new_rows``); returns (high_seq of
    that epoch, the node's highest non-volatile epoch), both after this batch."""
    high = max((int(row[_SEQ]) for row in new_rows), default=None)
    tx.execute("INSERT INTO node_epochs (node_id, epoch, high_seq, first_ms, last_ms) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (node_id, epoch) DO UPDATE SET last_ms = excluded.last_ms, high_seq = CASE "
               "WHEN excluded.high_seq IS NULL THEN node_epochs.high_seq "
               "WHEN node_epochs.high_seq IS NULL OR excluded.high_seq > node_epochs.high_seq "
               "THEN excluded.high_seq ELSE node_epochs.high_seq END RETURNING high_seq",
               (node, epoch, high, now_ms, now_ms))
    row = tx.fetchone()
    high_seq = None if row is None or row[0] is None else int(row[0])
    tx.execute("SELECT MAX(epoch) FROM node_epochs WHERE node_id = ? AND epoch < ?",
               (node, VOLATILE_EPOCH_MIN))
    row = tx.fetchone()
    max_epoch = None if row is None or row[0] is None else int(row[0])
    return high_seq, max_epoch


def missing_in(tx: Tx, node: str, epoch: int, first_seq: int, last_seq: int) -> int:
    """How many seqs of [first_seq, last_seq] of (node, epoch) the central does not hold."""
    tx.execute("SELECT COUNT(*) FROM readings WHERE node_id = ? AND epoch = ? AND seq BETWEEN ? AND ?",
               (node, epoch, first_seq, last_seq))
    row = tx.fetchone()
    held = 0 if row is None else int(row[0])
    return last_seq - first_seq + 1 - held


def is_hole(reason: str) -> bool:
    return reason in HOLE_REASONS


# ---------------------------------------------------------------- identities
def identity_of(health: Mapping[str, Any] | None) -> tuple[str, str, str] | None:
    """(hw_serial, machine_id, buffer_id) from a batch's health, ``''`` for a key not sent or null;
    None when the health names none of them (an older node: nothing to compare)."""
    if not health or not any(health.get(k) not in (None, "") for k in IDENTITY_KEYS):
        return None
    parts = tuple("" if health.get(k) is None else str(health.get(k)) for k in IDENTITY_KEYS)
    return parts  # type: ignore[return-value]


def note_identity(tx: Tx, node: str, health: Mapping[str, Any] | None, gap_reasons: Iterable[str],
                  now_ms: int) -> int:
    """Record the identity of this batch's sender; returns the incidents recorded (0 or 1).

    A new buffer_id on the hardware (hw_serial, machine_id) the node last reported from, without a
    ``buffer_lost`` gap since, is recorded as a ``buffer_replaced`` incident by the central itself:
    a node that lost its buffer and its state file stays visible."""
    identity = identity_of(health)
    if identity is None:
        return 0
    tx.execute("UPDATE node_identities SET last_seen_ms = ?, batches = batches + 1 WHERE node_id = ? "
               "AND hw_serial = ? AND machine_id = ? AND buffer_id = ?", (now_ms, node, *identity))
    if tx.rowcount > 0:
        return 0
    tx.execute("SELECT hw_serial, machine_id, buffer_id, last_seen_ms FROM node_identities WHERE node_id = ? "
               "ORDER BY last_seen_ms DESC LIMIT 1", (node,))
    last = tx.fetchone()
    tx.execute("INSERT INTO node_identities (node_id, hw_serial, machine_id, buffer_id, first_seen_ms, "
               "last_seen_ms, batches) VALUES (?, ?, ?, ?, ?, ?, 1)", (node, *identity, now_ms, now_ms))
    if last is None or tuple(last[:2]) != identity[:2] or last[2] == identity[2]:
        return 0
    if "buffer_lost" in gap_reasons:
        return 0
    tx.execute("SELECT 1 FROM gaps WHERE node_id = ? AND reason = 'buffer_lost' AND received_ms >= ? LIMIT 1",
               (node, int(last[3])))
    if tx.fetchone() is not None:
        return 0
    hardware = f"hw_serial {identity[0] or '?'}, machine_id {identity[1] or '?'}"
    add_incident(tx, node, "buffer_replaced", f"buffer_id changed from {last[2] or '?'} to "
                 f"{identity[2] or '?'} on {hardware} without a buffer_lost gap from the node: readings "
                 "of the old buffer that were never sent are lost", None, now_ms)
    return 1


@dataclass(frozen=True)
class Identity:
    hw_serial: str
    machine_id: str
    buffer_id: str
    first_seen_ms: int
    last_seen_ms: int
    batches: int


def identities(rows: Iterable[Sequence[Any]]) -> list[Identity]:
    """Rows of ``SELECT hw_serial, machine_id, buffer_id, first_seen_ms, last_seen_ms, batches``."""
    return [Identity(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


IDENTITY_SELECT = ("SELECT hw_serial, machine_id, buffer_id, first_seen_ms, last_seen_ms, batches "
                   "FROM node_identities WHERE node_id = ? ORDER BY first_seen_ms")


def clash(found: Sequence[Identity], now_ms: int, window_ms: int = CLASH_WINDOW_MS) -> bool:
    """Two devices share the node id: two identities seen within the window that alternate (one was
    seen again after the other first appeared). A buffer replaced once does not alternate."""
    recent = [i for i in found if i.last_seen_ms >= now_ms - window_ms]
    for older in recent:
        for newer in recent:
            if older is not newer and older.first_seen_ms <= newer.first_seen_ms < older.last_seen_ms:
                return True
    return False
