"""SQL of the buffer that needs no state: reading rows back with their stamps, deleting runs.

Readings live in two places (store.SCHEMA): packed in their cycle's row (``cycles.data``, every
cycle written since schema 2) or one row each in ``readings`` (cycles of a schema-1 file). The
functions here read and delete seq windows across both, so the buffer above sees one sequence.
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence

from node.buffer import packed
from node.buffer.base import CLK_FLAGS, _scale, decode_value, gaps_for, merge_gap
from node.buffer.columns import NAN, ClaimedReadings
from node.model import Gap, Reading


def cycles_covering(db: sqlite3.Connection, lo: int, hi: int) -> list[tuple[int, int, int, int, int, int]]:
    """(first_seq, n, wall_ms, boot_ms, boot, clk) of every cycle holding a seq in [lo, hi]."""
    row = db.execute("SELECT max(first_seq) FROM cycles WHERE first_seq <= ?", (lo,)).fetchone()
    start = lo if row[0] is None else row[0]
    return db.execute("SELECT first_seq, n, wall_ms, boot_ms, boot, clk FROM cycles"
                      " WHERE first_seq BETWEEN ? AND ? ORDER BY first_seq", (start, hi)).fetchall()


Row = tuple[int, int, float | None, int]  # (seq, channel id, stored value, flags)


def packed_overlapping(db: sqlite3.Connection, lo: int, hi: int, *, desc: bool = False,
                       columns: str = "first_seq, n, data") -> sqlite3.Cursor:
    """Packed cycle rows holding a seq in [lo, hi], in seq order (``desc``: newest first)."""
    row = db.execute("SELECT max(first_seq) FROM cycles WHERE first_seq <= ?", (lo,)).fetchone()
    start = lo if row[0] is None else row[0]
    order = "DESC" if desc else "ASC"
    return db.execute(f"SELECT {columns} FROM cycles WHERE first_seq BETWEEN ? AND ?"
                      f" AND first_seq + n - 1 >= ? AND data IS NOT NULL ORDER BY first_seq {order}",
                      (start, hi, lo))


def window(db: sqlite3.Connection, lo: int, hi: int, limit: int, *, desc: bool = False) -> WindowRows:
    """Up to ``limit`` readings with seq in [lo, hi], the lowest (``desc``: the highest), by seq.

    The packed cycles are selected by their (first_seq, n) alone and decoded only when the rows
    are read (`WindowRows`): a claim never holds thousands of row tuples at once (issue #22)."""
    order = "DESC" if desc else "ASC"
    legacy: list[Row] = db.execute(f"SELECT seq, ch, value, flags FROM readings WHERE seq BETWEEN ? AND ?"
                                   f" ORDER BY seq {order} LIMIT ?", (lo, hi, limit)).fetchall()
    got = 0 if desc else len(legacy)  # ascending: legacy readings come before every packed one
    cycles: list[tuple[int, int, bytes]] = []
    for first, n, data in packed_overlapping(db, lo, hi, desc=desc) if got < limit else ():
        cycles.append((first, n, data))
        got += min(first + n - 1, hi) - max(first, lo) + 1
        if got >= limit:
            break
    return WindowRows(legacy, cycles, lo, hi, limit, desc=desc)


class WindowRows:
    """The rows of `window`, (seq, ch, value, flags) in seq order, decoded when iterated.

    Holds the legacy rows (schema-1 files; none in a file written since) and the selected
    cycles' blobs; the `limit` lowest (``desc``: highest) seqs of them in [lo, hi] are the rows.
    """

    __slots__ = ("_legacy", "_cycles", "_lo", "_hi", "_count")

    def __init__(self, legacy: list[Row], cycles: list[tuple[int, int, bytes]], lo: int, hi: int,
                 limit: int, *, desc: bool) -> None:
        spans = [(seq, seq) for seq, *_ in legacy]
        spans += [(max(first, lo), min(first + n - 1, hi)) for first, n, _ in cycles]
        spans.sort(reverse=desc)
        taken = 0
        bound = None
        for a, b in spans:
            size = b - a + 1
            if size <= 0:
                continue
            if taken + size >= limit:
                bound = (a + limit - taken - 1) if not desc else (b - (limit - taken) + 1)
                taken = limit
                break
            taken += size
        if bound is not None:
            lo, hi = (bound, hi) if desc else (lo, bound)
        cycles.sort()
        self._legacy = sorted(r for r in legacy if lo <= r[0] <= hi)
        self._cycles = cycles
        self._lo = lo
        self._hi = hi
        self._count = taken

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[Row]:
        if self._legacy:  # a schema-1 file: few rows, merged the plain way
            yield from sorted([*self._legacy, *self._packed(self._cycles)])
            return
        yield from self._packed(self._cycles)

    def _packed(self, cycles: list[tuple[int, int, bytes]]) -> Iterator[Row]:
        lo, hi = self._lo, self._hi
        for first, _n, data in cycles:
            for k, (ch, value, flags) in enumerate(packed.decode(data)):
                seq = first + k
                if lo <= seq <= hi:
                    yield (seq, ch, value, flags)

    def __getitem__(self, index: int) -> Row:
        """The first (0) or the last (-1) row: their seqs bound the claim."""
        if index not in (0, -1) or not self._count:
            raise IndexError("WindowRows gives its first and last row only; iterate for the rest")
        if self._legacy:
            return list(self)[index]
        return list(self._packed([self._cycles[index]]))[index]  # the first or the last cycle holds it


def seqs_in(db: sqlite3.Connection, lo: int, hi: int, limit: int = 1 << 62) -> list[int]:
    """The seqs present in [lo, hi], lowest first, at most ``limit``."""
    seqs = [r[0] for r in db.execute("SELECT seq FROM readings WHERE seq BETWEEN ? AND ? ORDER BY seq"
                                     " LIMIT ?", (lo, hi, limit))]
    got = 0
    for first, n in packed_overlapping(db, lo, hi, columns="first_seq, n"):
        run = range(max(first, lo), min(first + n - 1, hi) + 1)
        seqs.extend(run)
        got += len(run)
        if got >= limit:
            break
    seqs.sort()
    del seqs[limit:]
    return seqs


def first_present(db: sqlite3.Connection, start: int, *, desc: bool = False) -> int | None:
    """The lowest seq >= ``start`` present in the file (``desc``: the highest seq <= ``start``).

    Every packed cycle lies above every legacy reading (schema 1 wrote them before), and a packed
    cycle holds each seq of its run: so the cycle row covering ``start`` and its neighbour decide.
    """
    cover = db.execute("SELECT first_seq, n, data IS NOT NULL FROM cycles WHERE first_seq <= ?"
                       " ORDER BY first_seq DESC LIMIT 1", (start,)).fetchone()
    if cover is not None and cover[2] and (desc or cover[0] + cover[1] - 1 >= start):
        return min(cover[0] + cover[1] - 1, start)
    if desc:  # no packed cycle at or below start: only legacy readings can be there
        return db.execute("SELECT max(seq) FROM readings WHERE seq <= ?", (start,)).fetchone()[0]
    legacy = db.execute("SELECT min(seq) FROM readings WHERE seq >= ?", (start,)).fetchone()[0]
    if legacy is not None:
        return int(legacy)
    row = db.execute("SELECT first_seq FROM cycles WHERE first_seq > ? AND data IS NOT NULL"
                     " ORDER BY first_seq LIMIT 1", (start,)).fetchone()
    return None if row is None else int(row[0])


def delete_window(db: sqlite3.Connection, lo: int, hi: int) -> None:
    """Delete every reading with seq in [lo, hi]; a packed cycle partly inside keeps the rest (its
    head and tail become cycle rows of their own with the same stamp)."""
    db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (lo, hi))
    cut = packed_overlapping(db, lo, hi, columns="first_seq, n, wall_ms, boot_ms, boot, clk, data").fetchall()
    if cut:
        db.execute("DELETE FROM cycles WHERE first_seq BETWEEN ? AND ? AND data IS NOT NULL",
                   (cut[0][0], cut[-1][0]))
    keep = []
    for first, n, wall, boot_ms, boot, clk, data in cut[:1] + cut[-1:] if len(cut) > 1 else cut:
        last = first + n - 1
        if first >= lo and last <= hi:
            continue
        rows = packed.decode(data)
        if first < lo:  # the head survives
            keep.append((first, lo - first, wall, boot_ms, boot, clk, packed.encode(rows[:lo - first])))
        if last > hi:  # the tail survives
            keep.append((hi + 1, last - hi, wall, boot_ms, boot, clk, packed.encode(rows[hi + 1 - first:])))
    db.executemany("INSERT INTO cycles VALUES (?,?,?,?,?,?,?)", keep)
    drop_orphan_cycles(db, lo, hi)


def unsynced_count(db: sqlite3.Connection, boot: int, clk: int) -> int:
    """Readings of cycles of ``boot`` in clock state ``clk``."""
    legacy = db.execute("SELECT count(*) FROM cycles c, readings r WHERE c.boot = ? AND c.clk = ?"
                        " AND c.data IS NULL AND r.seq BETWEEN c.first_seq AND c.first_seq + c.n - 1",
                        (boot, clk)).fetchone()[0]
    return int(legacy) + int(db.execute("SELECT coalesce(sum(n), 0) FROM cycles WHERE boot = ? AND clk = ?"
                                        " AND data IS NOT NULL", (boot, clk)).fetchone()[0])


def readings_in(db: sqlite3.Connection, rows: Sequence[tuple[int, int, float | None, int]],
                channels: dict[int, tuple[str, float]], boot_names: dict[int, str]) -> ClaimedReadings:
    """Readings for ``rows`` = (seq, ch, value, flags) sorted by seq, stamps joined from cycles.

    This is the inner loop of every claim (a drain builds ~600,000 readings): each cycle's stamp
    and each channel's decoding are worked out once, and values stored as an integer count of a
    power-of-ten resolution (all of CHANNEL_UNITS) are decoded inline. The readings are kept as
    columns (node/buffer/columns.py: what a drain's batches cost in memory) and built when read.
    """
    if not rows:
        return ClaimedReadings([], [], _reading_maker())
    cycles = cycles_covering(db, rows[0][0], rows[-1][0])
    starts = [c[0] for c in cycles]
    stamps = [(wall, boot_ms, boot_names.get(boot, "")) for _, _, wall, boot_ms, boot, _ in cycles]
    clk_flags_of = [CLK_FLAGS.get(clk, 0) for *_, clk in cycles]
    names: list[str] = []
    info: dict[int, tuple[int, float, int]] = {}
    out = ClaimedReadings(names, stamps, _reading_maker())
    add_seq, add_channel, add_value, add_has_value, add_flags, add_stamp = out.appenders()
    k = 0
    last = len(starts) - 1
    next_start = starts[1] if last > 0 else _NO_SEQ
    clk_flags = clk_flags_of[0]
    for seq, ch, value, flags in rows:
        if seq >= next_start:
            while k < last and starts[k + 1] <= seq:
                k += 1
            next_start = starts[k + 1] if k < last else _NO_SEQ
            clk_flags = clk_flags_of[k]
        c = info.get(ch)
        if c is None:
            name, res = channels.get(ch, (f"?{ch}", 0.0))
            c = info[ch] = (len(names), res, _scale(res) if res > 0 else 0)
            names.append(name)
        name_id, res, scale = c
        if type(value) is int and scale:
            v: float | None = value / scale
        else:
            v = decode_value(value, res)
        add_seq(seq)
        add_channel(name_id)
        add_value(NAN if v is None else v)
        add_has_value(v is not None)
        add_flags(flags | clk_flags)
        add_stamp(k)
    return out


_NO_SEQ = 1 << 63


@functools.lru_cache(maxsize=1)
def _reading_maker() -> Callable[..., Reading]:
    """A constructor equal to ``Reading(*fields)``, about 2.5x faster.

    `Reading` is a frozen, slotted dataclass: its generated ``__init__`` goes through
    ``object.__setattr__`` for every field. Filling the slots through their descriptors gives
    the same object. Falls back to ``Reading`` should it ever validate in ``__post_init__``.
    """
    names = [f.name for f in dataclasses.fields(Reading)]
    if hasattr(Reading, "__post_init__") or tuple(names) != tuple(getattr(Reading, "__slots__", ())):
        return Reading
    s0, s1, s2, s3, s4, s5, s6 = (getattr(Reading, n).__set__ for n in names)
    new = object.__new__

    def make(seq: int, channel: str, value: float | None, flags: int, wall_ms: int, boot_ms: int,
             boot_id: str) -> Reading:
        r = new(Reading)
        s0(r, seq)
        s1(r, channel)
        s2(r, value)
        s3(r, flags)
        s4(r, wall_ms)
        s5(r, boot_ms)
        s6(r, boot_id)
        return r

    return make


def walls_of(db: sqlite3.Connection, seqs: Sequence[int]) -> list[int | None]:
    """Wall time of each of the sorted ``seqs`` (from its cycle; None if unknown)."""
    if not seqs:
        return []
    cycles = cycles_covering(db, seqs[0], seqs[-1])
    out: list[int | None] = []
    k = 0
    for seq in seqs:
        while k + 1 < len(cycles) and cycles[k + 1][0] <= seq:
            k += 1
        out.append(cycles[k][2] if cycles and cycles[k][0] <= seq else None)
    return out


def drop_orphan_cycles(db: sqlite3.Connection, lo: int, hi: int) -> None:
    """Delete cycles overlapping [lo, hi] that no longer hold any reading."""
    row = db.execute("SELECT max(first_seq) FROM cycles WHERE first_seq <= ?", (lo,)).fetchone()
    start = lo if row[0] is None else row[0]
    db.execute("DELETE FROM cycles WHERE first_seq BETWEEN ? AND ? AND data IS NULL AND NOT EXISTS"
               " (SELECT 1 FROM readings WHERE seq BETWEEN cycles.first_seq"
               " AND cycles.first_seq + cycles.n - 1)", (start, hi))


def raise_seq_hw(db: sqlite3.Connection, seq: int) -> None:
    """Remember the highest seq ever deleted, so it is never handed out again."""
    db.execute("UPDATE meta SET v = max(v, ?) WHERE k = 'seq_hw'", (seq,))


def delete_as_gaps(db: sqlite3.Connection, epoch: int, seqs: Sequence[int], reason: str,
                   claimed_gap_ids: set[int]) -> list[Gap]:
    """Delete the readings ``seqs`` (sorted) and record each contiguous run as a gap."""
    if not seqs:
        return []
    gaps = gaps_for(epoch, seqs, walls_of(db, seqs), reason)
    for g in gaps:
        delete_window(db, g.first_seq, g.last_seq)
    add_gaps(db, gaps, claimed_gap_ids)
    raise_seq_hw(db, seqs[-1])
    return gaps


def add_gaps(db: sqlite3.Connection, gaps: Sequence[Gap], claimed_gap_ids: set[int]) -> None:
    """Insert gaps, extending the newest pending gap when a new one continues it."""
    for g in gaps:
        last = db.execute("SELECT id, epoch, first_seq, last_seq, count, first_wall_ms, last_wall_ms,"
                          " reason FROM gaps ORDER BY id DESC LIMIT 1").fetchone()
        if last is not None and last[0] not in claimed_gap_ids:
            merged = merge_gap(Gap(*last[1:]), g)
            if merged is not None:
                db.execute("UPDATE gaps SET last_seq = ?, count = ?, last_wall_ms = ? WHERE id = ?",
                           (merged.last_seq, merged.count, merged.last_wall_ms, last[0]))
                continue
        db.execute("INSERT INTO gaps(epoch, first_seq, last_seq, count, first_wall_ms, last_wall_ms,"
                   " reason) VALUES (?,?,?,?,?,?,?)", (g.epoch, g.first_seq, g.last_seq, g.count,
                                                       g.first_wall_ms, g.last_wall_ms, g.reason))


def refused_note(what: str, reason: str, original: str) -> str:
    """The detail of an incident that stands for a record the central refused (short, ASCII)."""
    shown = ascii(original[:300])[1:-1]
    return f"{what} refused by the central ({ascii(reason[:300])[1:-1]}); it was: {shown}"


def replace_refused(db: sqlite3.Connection, part: str, record_id: int, reason: str, now_ms: int) -> None:
    """Replace a refused incident in place, or a refused gap by an incident describing it."""
    if part == "incident":
        row = db.execute("SELECT kind, detail FROM incidents WHERE id = ?", (record_id,)).fetchone()
        if row is not None:
            db.execute("UPDATE incidents SET kind = 'record_refused', detail = ? WHERE id = ?",
                       (refused_note(f"incident {ascii(row[0][:64])}", reason, row[1]), record_id))
        return
    row = db.execute("SELECT epoch, first_seq, last_seq, count, reason FROM gaps WHERE id = ?",
                     (record_id,)).fetchone()
    if row is None:
        return
    epoch, first, last, count, why = row
    db.execute("DELETE FROM gaps WHERE id = ?", (record_id,))
    db.execute("INSERT INTO incidents(wall_ms, kind, detail, count) VALUES (?,?,?,?)",
               (now_ms, "gap_refused", refused_note("gap", reason,
                                                    f"epoch {epoch} seq {first}..{last} {why}"), count))


def put_again(db: sqlite3.Connection, rows: Sequence[Row], first_seq: int) -> int:
    """Write ``rows`` (seq, channel id, stored value, flags; sorted, all still in the file) as new
    cycles numbered from ``first_seq`` on, each reading with the stamp (wall, boot time, boot, clock
    state) of the cycle it came from: its content unchanged, copied, not decoded and encoded. Raises
    ``seq_hw`` over them; returns the next free seq (#20: readings the central holds otherwise)."""
    cycles = cycles_covering(db, rows[0][0], rows[-1][0])
    starts = [cy[0] for cy in cycles]
    new_cycles: list[tuple[object, ...]] = []
    run: list[tuple[int, int | float | None, int]] = []
    stamp: tuple[int, int, int, int] | None = None
    seq = first_seq
    k = 0
    for r in rows:
        while k + 1 < len(starts) and starts[k + 1] <= r[0]:
            k += 1
        here = tuple(cycles[k][2:6])
        if here != stamp:
            if run and stamp is not None:
                new_cycles.append((seq, len(run), *stamp, packed.encode(run)))
                seq += len(run)
            run = []
            stamp = here  # type: ignore[assignment]
        run.append((r[1], r[2], r[3]))
    if run and stamp is not None:
        new_cycles.append((seq, len(run), *stamp, packed.encode(run)))
        seq += len(run)
    db.executemany("INSERT INTO cycles VALUES (?,?,?,?,?,?,?)", new_cycles)
    db.execute("UPDATE meta SET v = max(v, ?) WHERE k = 'seq_hw'", (seq - 1,))
    return seq
