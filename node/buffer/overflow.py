"""The bounded in-memory overflow: cycles, gaps and incidents waiting while the disk refuses writes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from node.buffer.base import CLK_CORRECTED, CLK_UNSYNCED, gaps_for, merge_gap
from node.model import Gap, Sample, Stamp


@dataclass(slots=True)
class Pending:
    """A cycle not yet on disk; ``seq`` is -1 until it can be numbered."""

    seq: int
    samples: list[Sample]
    stamp: Stamp
    clk: int


class Overflow:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cycles: deque[Pending] = deque()
        self.readings = 0
        self.gaps: list[Gap] = []
        self.incidents: list[tuple[int, str, str, int | None]] = []  # (wall_ms, kind, detail, count)

    def __bool__(self) -> bool:
        return bool(self.cycles or self.gaps or self.incidents)

    def hold(self, p: Pending, epoch: int, reason: str) -> int:
        """Keep ``p``; drop the oldest held cycles beyond the limit as gaps. Returns readings dropped."""
        self.cycles.append(p)
        self.readings += len(p.samples)
        dropped = 0
        while self.readings > self.limit and len(self.cycles) > 1:
            old = self.cycles.popleft()
            self.readings -= len(old.samples)
            dropped += len(old.samples)
            if old.seq < 0:  # never numbered: all we can say is how many
                self.incidents.append((old.stamp.wall_ms, "readings_lost",
                                       "buffer unusable and overflow full", len(old.samples)))
                continue
            seqs = list(range(old.seq, old.seq + len(old.samples)))
            for g in gaps_for(epoch, seqs, [old.stamp.wall_ms] * len(seqs), reason):
                merged = merge_gap(self.gaps[-1], g) if self.gaps else None
                if merged is not None:
                    self.gaps[-1] = merged
                else:
                    self.gaps.append(g)
        return dropped

    def forget_numbers(self) -> None:
        """A new epoch started: held cycles get numbers of the new epoch when written."""
        for p in self.cycles:
            p.seq = -1

    def correct_clock(self, boot_id: str, offset_ms: int, *, true_base_ms: int | None = None) -> int:
        n = 0
        for p in self.cycles:
            if p.stamp.boot_id == boot_id and p.clk == CLK_UNSYNCED:
                wall = p.stamp.wall_ms + offset_ms if true_base_ms is None else p.stamp.boot_ms + true_base_ms
                p.stamp = Stamp(wall, p.stamp.boot_ms, boot_id, False)
                p.clk = CLK_CORRECTED
                n += len(p.samples)
        return n

    def clear(self) -> None:
        self.cycles.clear()
        self.readings = 0
        self.gaps.clear()
        self.incidents.clear()
