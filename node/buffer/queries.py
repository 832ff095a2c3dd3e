"""SQL of the buffer that needs no state: reading rows back with their stamps, deleting runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from node.buffer.base import CLK_FLAGS, decode_value, gaps_for, merge_gap
from node.model import Gap, Reading


def cycles_covering(db: sqlite3.Connection, lo: int, hi: int) -> list[tuple[int, int, int, int, int, int]]:
    """(first_seq, n, wall_ms, boot_ms, boot, clk) of every cycle holding a seq in [lo, hi]."""
    row = db.execute("SELECT max(first_seq) FROM cycles WHERE first_seq <= ?", (lo,)).fetchone()
    start = lo if row[0] is None else row[0]
    return db.execute("SELECT first_seq, n, wall_ms, boot_ms, boot, clk FROM cycles"
                      " WHERE first_seq BETWEEN ? AND ? ORDER BY first_seq", (start, hi)).fetchall()


def readings_in(db: sqlite3.Connection, rows: Sequence[tuple[int, int, float | None, int]],
                channels: dict[int, tuple[str, float]], boot_names: dict[int, str]) -> list[Reading]:
    """Readings for ``rows`` = (seq, ch, value, flags) sorted by seq, stamps joined from cycles."""
    if not rows:
        return []
    cycles = cycles_covering(db, rows[0][0], rows[-1][0])
    out: list[Reading] = []
    k = 0
    for seq, ch, value, flags in rows:
        while k + 1 < len(cycles) and cycles[k + 1][0] <= seq:
            k += 1
        _, _, wall, boot_ms, boot, clk = cycles[k]
        name, res = channels.get(ch, (f"?{ch}", 0.0))
        out.append(Reading(seq, name, decode_value(value, res), flags | CLK_FLAGS.get(clk, 0),
                           wall, boot_ms, boot_names.get(boot, "")))
    return out


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
    db.execute("DELETE FROM cycles WHERE first_seq BETWEEN ? AND ? AND NOT EXISTS"
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
        db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (g.first_seq, g.last_seq))
    add_gaps(db, gaps, claimed_gap_ids)
    drop_orphan_cycles(db, seqs[0], seqs[-1])
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
