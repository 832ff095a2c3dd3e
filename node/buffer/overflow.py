"""The bounded in-memory overflow: cycles, gaps and incidents waiting while the disk refuses writes.

What waits here can still be uploaded (a read-only SD card must not silence a pole), but it is not
durable: its identity must never be one the file could hand out again after a restart. So a held
cycle has no number until it must have one — when the uploader claims it, or when the bound drops
it as a gap — and then it is numbered in a *volatile epoch* of its own (`VOLATILE_EPOCH_BASE` + a
random number, one per episode of a refusing disk), never in the file's epoch. Cycles still
unnumbered when the disk works again are written to the file and numbered there, as if they had
never waited. A numbered cycle stays in memory until the central acknowledges it (or the bound drops
it as a gap): every volatile seq is either at the central, in a gap, or still here.

Gaps carry negative keys and incidents ids of their own (above every id the file hands out), so a
claim can name them and an acknowledgement remove them from memory.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from node.buffer.base import CLK_CORRECTED, CLK_FLAGS, CLK_UNSYNCED, gaps_for, merge_gap
from node.model import Gap, Incident, Reading, Sample, Stamp

# ids of incidents recorded while the disk refused writes: 2^52 + the wall time in µs, so they
# never meet an id the file hands out (written later with their own id, the file goes on above)
HELD_INCIDENT_BASE = 1 << 52
VOLATILE_EPOCH_BASE = 1 << 40  # file epochs count up from 1; volatile ones are this + 40 random bits


@dataclass(slots=True)
class Pending:
    """A cycle not yet on disk; ``seq`` is -1 until it is numbered (in ``epoch``)."""

    seq: int
    samples: list[Sample]
    stamp: Stamp
    clk: int
    epoch: int = 0
    claimed_by: int | None = None  # the batch id it travels in

    @property
    def last(self) -> int:
        return self.seq + len(self.samples) - 1

    def readings(self) -> list[Reading]:
        flags = CLK_FLAGS[self.clk]
        st = self.stamp
        return [Reading(self.seq + i, s.channel, s.value, s.flags | flags, st.wall_ms, st.boot_ms, st.boot_id)
                for i, s in enumerate(self.samples)]


class Overflow:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cycles: deque[Pending] = deque()
        self.readings = 0
        self.gaps: dict[int, Gap] = {}  # key < 0 -> gap
        self.incidents: dict[int, Incident] = {}
        self._next_gap_key = -1
        self._last_incident_id = HELD_INCIDENT_BASE
        self.epoch = 0  # the volatile epoch of this episode (0: none yet)
        self._next_seq = 1

    def __bool__(self) -> bool:
        return bool(self.cycles or self.gaps or self.incidents)

    # ------------------------------------------------------------ identities
    def number(self, cycles: list[Pending]) -> None:
        """Give unnumbered cycles consecutive seqs in this episode's volatile epoch."""
        for p in cycles:
            if p.seq > 0:
                continue
            if not self.epoch:
                self.epoch, self._next_seq = VOLATILE_EPOCH_BASE + secrets.randbits(40), 1
            p.seq, p.epoch = self._next_seq, self.epoch
            self._next_seq += len(p.samples)

    def episode_over(self) -> None:
        """The disk works again: the next refusal starts a new volatile epoch."""
        if not any(p.seq > 0 for p in self.cycles):
            self.epoch = 0

    def add_incident(self, wall_ms: int, kind: str, detail: str, count: int | None, now_us: int) -> None:
        new_id = self._last_incident_id = max(self._last_incident_id + 1, HELD_INCIDENT_BASE + now_us)
        self.incidents[new_id] = Incident(new_id, wall_ms, kind, detail, count)

    def add_gap(self, gap: Gap, frozen: Collection[int] = ()) -> None:
        """Keep a gap, extending the newest one when it continues it (unless that one is claimed)."""
        last = min(self.gaps) if self.gaps else None  # keys go down: the newest gap has the least
        merged = merge_gap(self.gaps[last], gap) if last is not None and last not in frozen else None
        if merged is not None:
            self.gaps[last] = merged  # type: ignore[index]
            return
        self.gaps[self._next_gap_key] = gap
        self._next_gap_key -= 1

    # ------------------------------------------------------------ cycles
    def hold(self, p: Pending, reason: str, frozen_gaps: Collection[int] = ()) -> int:
        """Keep ``p``; drop the oldest unclaimed held cycles beyond the limit as exact gaps (numbered
        now if need be). Returns the readings dropped."""
        self.cycles.append(p)
        self.readings += len(p.samples)
        dropped = 0
        while self.readings > self.limit:
            old = next((c for c in self.cycles if c is not p and c.claimed_by is None), None)
            if old is None:
                break
            self.drop([old], reason, frozen_gaps)
            dropped += len(old.samples)
        return dropped

    def drop(self, cycles: list[Pending], reason: str, frozen_gaps: Collection[int] = ()) -> None:
        """Remove ``cycles`` and record them as gaps of their (volatile) epoch."""
        self.number(cycles)
        for c in cycles:
            self.cycles.remove(c)
            self.readings -= len(c.samples)
            seqs = list(range(c.seq, c.last + 1))
            for g in gaps_for(c.epoch, seqs, [c.stamp.wall_ms] * len(seqs), reason):
                self.add_gap(g, frozen_gaps)

    def claimable(self, limit: int, newest_first: bool) -> list[Pending]:
        """Unclaimed cycles from the newest or the oldest end, in one epoch (numbered ones of an
        earlier claim, or unnumbered ones), up to ``limit`` readings; a cycle larger than ``limit``
        is split so that a bisection (413, a 422 naming a reading) always gets smaller."""
        order = reversed(self.cycles) if newest_first else iter(self.cycles)
        out: list[Pending] = []
        total = 0
        for c in order:
            if c.claimed_by is not None or (out and (c.seq > 0) != (out[0].seq > 0)):
                if out:
                    break
                continue
            if out and total + len(c.samples) > limit:
                break
            out.append(c)
            total += len(c.samples)
        if len(out) == 1 and len(out[0].samples) > limit:
            self._split(out[0], limit)
        if out and out[0].seq > 0:
            out.sort(key=lambda c: c.seq)
        elif newest_first:
            out.reverse()  # unnumbered: in time order, as they will be numbered
        return out

    def _split(self, p: Pending, k: int) -> None:
        """Keep the first ``k`` readings in ``p``; the rest becomes a cycle of its own (same stamp)."""
        rest = Pending(p.seq + k if p.seq > 0 else -1, p.samples[k:], p.stamp, p.clk, p.epoch)
        p.samples = p.samples[:k]
        self.cycles.insert(self.cycles.index(p) + 1, rest)

    def unnumbered(self) -> list[Pending]:
        """Cycles no one has seen a number of: they can go to the file as if they never waited."""
        return [c for c in self.cycles if c.seq < 0 and c.claimed_by is None]

    def remove(self, cycles: list[Pending]) -> None:
        for c in cycles:
            if c in self.cycles:
                self.cycles.remove(c)
                self.readings -= len(c.samples)

    def correct_clock(self, boot_id: str, offset_ms: int, *, true_base_ms: int | None = None) -> int:
        n = 0
        for p in self.cycles:
            if p.stamp.boot_id == boot_id and p.clk == CLK_UNSYNCED:
                wall = p.stamp.wall_ms + offset_ms if true_base_ms is None else p.stamp.boot_ms + true_base_ms
                p.stamp = Stamp(wall, p.stamp.boot_ms, boot_id, False)
                p.clk = CLK_CORRECTED
                n += len(p.samples)
        return n

    def rebase_clock(self, boot_id: str, wrong_base_ms: int, true_base_ms: int, tolerance_ms: int) -> int:
        n = 0
        for p in self.cycles:
            base = p.stamp.wall_ms - p.stamp.boot_ms
            if p.stamp.boot_id == boot_id and abs(base - wrong_base_ms) <= tolerance_ms:
                p.stamp = Stamp(p.stamp.boot_ms + true_base_ms, p.stamp.boot_ms, boot_id, False, True)
                p.clk = CLK_CORRECTED
                n += len(p.samples)
        return n
