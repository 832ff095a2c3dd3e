"""`MemoryBuffer`: the buffer contract in memory, for tests and for running without a state dir."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from node.buffer.base import (
    CLK_CORRECTED,
    CLK_FLAGS,
    CLK_UNSYNCED,
    MAX_RIDE_ALONG,
    BufferStats,
    Claim,
    PutResult,
    clock_state,
    gaps_for,
    merge_gap,
)
from node.buffer.collision import Receipt, Segments, Settled, collision_detail, new_buffer_id, next_epoch
from node.buffer.queries import refused_note
from node.model import Batch, Gap, Incident, Reading, Sample, Stamp
from node.protocol import MAX_DETAIL
from node.wire_repair import MAX_KIND, clean_text


class MemoryBuffer:
    """Same interface and semantics as `SqliteBuffer`, bounded by ``max_readings``; nothing survives."""

    def __init__(self, node_id: str, *, max_readings: int = 100_000, max_age: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node_id = node_id
        self.epoch = 1
        self.max_readings = int(max_readings)
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.RLock()
        self._readings: dict[int, tuple[str, float | None, int, int]] = {}  # seq -> (ch, value, flags, cycle)
        self._cycles: dict[int, list] = {}  # first_seq -> [n, wall_ms, boot_ms, boot_id, clk]
        self._gaps: dict[int, Gap] = {}
        self._incidents: dict[int, Incident] = {}
        self._claims: dict[int, Claim] = {}
        self._next = {"seq": 1, "batch": 1, "gap": 1, "incident": 1}
        self._dropped = 0
        self._segments = Segments([(0, self.epoch)])  # see node/buffer/collision.py
        self.buffer_id = new_buffer_id()

    def __enter__(self) -> MemoryBuffer:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self._claims.clear()

    def _take(self, key: str, n: int = 1) -> int:
        v = self._next[key]
        self._next[key] = v + n
        return v

    def put(self, samples: Sequence[Sample], stamp: Stamp) -> PutResult:
        samples = list(samples)
        with self._lock:
            first = self._take("seq", len(samples))
            if samples:
                self._cycles[first] = [len(samples), stamp.wall_ms, stamp.boot_ms, stamp.boot_id,
                                       clock_state(stamp.synced, stamp.corrected)]
                for i, s in enumerate(samples):
                    self._readings[first + i] = (s.channel, s.value, int(s.flags), first)
            over = len(self._readings) - self.max_readings
            if over > 0:
                self._drop(self._unclaimed_oldest(over), "evicted_size")
            if self.max_age is not None:
                cutoff = int((self._clock() - self.max_age) * 1000)
                old = [s for s in self._unclaimed_oldest(len(self._readings))
                       if self._cycles[self._readings[s][3]][4] != CLK_UNSYNCED
                       and self._cycles[self._readings[s][3]][1] < cutoff]
                self._drop(old, "evicted_age")
            return PutResult(first, first + len(samples) - 1, True)

    def _claimed(self, seq: int) -> bool:
        return any(c.lo <= seq <= c.hi for c in self._claims.values())

    def _unclaimed_oldest(self, n: int) -> list[int]:
        out = []
        for seq in self._readings:
            if len(out) >= n:
                break
            if not self._claimed(seq):
                out.append(seq)
        return out

    def _drop(self, seqs: list[int], reason: str) -> None:
        if not seqs:
            return
        walls = [self._cycles[self._readings[s][3]][1] for s in seqs]
        for s in seqs:
            self._forget(s)
        wall_of = dict(zip(seqs, walls, strict=True))
        self._add_gaps([g for epoch, part in self._segments.split(seqs)
                        for g in gaps_for(epoch, part, [wall_of[q] for q in part], reason)])
        self._dropped += len(seqs)

    def _add_gaps(self, gaps: Sequence[Gap]) -> None:
        taken = {g for c in self._claims.values() for g in c.gap_ids}
        for g in gaps:
            last_id = max(self._gaps, default=None)
            merged = None
            if last_id is not None and last_id not in taken:
                merged = merge_gap(self._gaps[last_id], g)
            if merged is not None:
                self._gaps[last_id] = merged  # type: ignore[index]
            else:
                self._gaps[self._take("gap")] = g

    def _forget(self, seq: int) -> None:
        _, _, _, cycle = self._readings.pop(seq)
        c = self._cycles[cycle]
        if not any(s in self._readings for s in range(cycle, cycle + c[0])):
            del self._cycles[cycle]

    def claim(self, max_readings: int, *, newest_first: bool = False,
              max_records: int = MAX_RIDE_ALONG) -> Batch | None:
        cap = max(1, min(int(max_records), MAX_RIDE_ALONG))
        with self._lock:
            order = sorted(self._readings, reverse=newest_first)
            seqs: list[int] = []
            for s in order:
                if self._claimed(s):
                    if seqs:
                        break
                    continue
                if seqs and self._segments.epoch_of(s) != self._segments.epoch_of(seqs[0]):
                    break  # one epoch per batch
                seqs.append(s)
                if len(seqs) >= max(1, max_readings):
                    break
            seqs.sort()
            taken_g = {g for c in self._claims.values() for g in c.gap_ids}
            taken_i = {i for c in self._claims.values() for i in c.incident_ids}
            gap_ids = [i for i in self._gaps if i not in taken_g][:cap]
            inc_ids = [i for i in self._incidents if i not in taken_i][:cap]
            if not seqs and not gap_ids and not inc_ids:
                return None
            readings = []
            for s in seqs:
                ch, value, flags, cycle = self._readings[s]
                _, wall, boot_ms, boot_id, clk = self._cycles[cycle]
                readings.append(Reading(s, ch, value, flags | CLK_FLAGS[clk], wall, boot_ms, boot_id))
            batch_id = self._take("batch")
            lo, hi = (seqs[0], seqs[-1]) if seqs else (0, -1)
            epoch = self._segments.epoch_of(lo) if seqs else self.epoch
            self._claims[batch_id] = Claim(lo, hi, len(seqs), gap_ids, inc_ids, epoch=epoch)
            return Batch(batch_id, self.node_id, epoch, readings, [self._gaps[i] for i in gap_ids],
                         [self._incidents[i] for i in inc_ids], live=newest_first)

    def ack(self, batch_id: int) -> bool:
        with self._lock:
            c = self._claims.pop(batch_id, None)
            if c is None:
                return False
            for s in [s for s in self._readings if c.lo <= s <= c.hi]:
                self._forget(s)
            for i in c.gap_ids:
                self._gaps.pop(i, None)
            for i in c.incident_ids:
                self._incidents.pop(i, None)
            return True

    def ack_receipt(self, batch_id: int, receipt: Receipt) -> Settled:
        """`SqliteBuffer.ack_receipt` in memory: same decisions, nothing durable."""
        with self._lock:
            c = self._claims.get(batch_id)
            if c is None:
                return Settled(False)
            epoch = c.epoch or self.epoch
            current = epoch == self.epoch
            if not current and not c.count:
                return Settled(self.ack(batch_id))
            own_top = self._next["seq"] - 1 if current else self._segments.bounds(c.lo)[1]
            if not receipt.collides(own_top):
                return Settled(self.ack(batch_id))
            seqs = sorted(s for s in self._readings if c.lo <= s <= c.hi)
            listed = [s for s in receipt.conflict_seqs if c.lo <= s <= c.hi]
            ack_hi = c.hi if receipt.complete or not listed else listed[-1]
            conflicting = set(listed) if listed or receipt.complete else set(seqs)
            kind = detail = None
            new_epoch = None
            first_new = self._next["seq"]
            if current:
                new_epoch = self.epoch = next_epoch(self.epoch, receipt)
                self._segments.start(first_new, new_epoch)
                kind = "identity_clash"
                self.buffer_id = new_buffer_id()  # as SqliteBuffer: a shared file's copy takes a new id
                if receipt.high_seq is not None and receipt.high_seq > own_top:
                    self._add_gaps([Gap(epoch, own_top + 1, receipt.high_seq, receipt.high_seq - own_top,
                                        None, None, "buffer_rollback")])
            moved = 0
            for s in seqs:
                if s > ack_hi:
                    break
                ch, value, flags, cycle = self._readings[s]
                if s in conflicting:
                    _, wall, boot_ms, boot_id, clk = self._cycles[cycle]
                    new = self._take("seq")
                    self._cycles[new] = [1, wall, boot_ms, boot_id, clk]
                    self._readings[new] = (ch, value, flags, new)
                    moved += 1
                self._forget(s)
            del self._claims[batch_id]
            for i in c.gap_ids:
                self._gaps.pop(i, None)
            for i in c.incident_ids:
                self._incidents.pop(i, None)
            if kind is not None:
                detail = collision_detail(epoch, own_top, receipt, self.epoch, moved, first_new, kind)
                self.record_incident(kind, detail, receipt.conflicts)
            return Settled(True, new_epoch, moved, sum(1 for s in seqs if s > ack_hi), kind, detail)

    def release(self, batch_id: int) -> bool:
        with self._lock:
            return self._claims.pop(batch_id, None) is not None

    def dead_letter(self, batch_id: int, reason: str) -> bool:
        with self._lock:
            c = self._claims.pop(batch_id, None)
            if c is None:
                return False
            seqs = sorted(s for s in self._readings if c.lo <= s <= c.hi)
            if seqs:  # the ride-along gaps/incidents stay pending (see SqliteBuffer.dead_letter)
                self._drop(seqs, "rejected")
                detail = f"batch of {len(seqs)} readings (seq {c.lo}..{c.hi}) rejected: {reason}"
                self.record_incident("batch_rejected", detail, len(seqs))
            return True

    def refuse_record(self, batch_id: int, part: str, index: int, reason: str) -> bool:
        with self._lock:
            c = self._claims.get(batch_id)
            ids = (c.gap_ids if part == "gap" else c.incident_ids) if c is not None else []
            if not 0 <= index < len(ids):
                return False
            if part == "incident":
                old = self._incidents[ids[index]]
                note = refused_note(f"incident {ascii(old.kind[:64])}", reason, old.detail)
                self._incidents[old.id] = Incident(old.id, old.wall_ms, "record_refused", note, old.count)
                return True
            gap = self._gaps.pop(ids[index])
            c.gap_ids.remove(ids[index])  # type: ignore[union-attr]
            text = f"epoch {gap.epoch} seq {gap.first_seq}..{gap.last_seq} {gap.reason}"
            self.record_incident("gap_refused", refused_note("gap", reason, text), gap.count)
            return True

    def correct_clock(self, boot_id: str, offset_ms: int, *, true_base_ms: int | None = None) -> int:
        with self._lock:
            n = 0
            for first, c in self._cycles.items():
                if c[3] == boot_id and c[4] == CLK_UNSYNCED:
                    c[1] = c[1] + int(offset_ms) if true_base_ms is None else c[2] + int(true_base_ms)
                    c[4] = CLK_CORRECTED
                    n += sum(1 for s in range(first, first + c[0]) if s in self._readings)
            return n

    def rebase_clock(self, boot_id: str, wrong_base_ms: int, true_base_ms: int, tolerance_ms: int) -> int:
        """See `SqliteBuffer.rebase_clock`."""
        with self._lock:
            n = 0
            for first, c in self._cycles.items():
                if c[3] == boot_id and abs(c[1] - c[2] - wrong_base_ms) <= tolerance_ms:
                    c[1] = c[2] + int(true_base_ms)
                    c[4] = CLK_CORRECTED
                    n += sum(1 for s in range(first, first + c[0]) if s in self._readings)
            return n

    def record_incident(self, kind: str, detail: str, count: int | None = None) -> None:
        with self._lock:
            i = self._take("incident")
            self._incidents[i] = Incident(i, int(self._clock() * 1000), clean_text(kind, MAX_KIND),
                                          clean_text(detail, MAX_DETAIL), count)

    def check_integrity(self) -> str:
        return "ok"

    def stats(self) -> BufferStats:
        with self._lock:
            walls = [c[1] for c in self._cycles.values()]
            return BufferStats(self.node_id, self.epoch, len(self._readings), 0,
                               walls[0] if walls else None, walls[-1] if walls else None,
                               self._next["seq"] - 1, sum(c.count for c in self._claims.values()),
                               len(self._gaps), len(self._incidents), 0, self._dropped, "ok",
                               self.buffer_id, min(self._readings, default=self._next["seq"]) - 1,
                               tuple(self._segments.pairs))
