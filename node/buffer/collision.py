"""When the node's numbering collides with what the central holds (issue #20), and what to do.

Two devices with one identity (a cloned SD card) or a buffer that rolled back (an SD card that
lost its last writes) both hand out (epoch, seq) pairs the central already holds with other
content. The central says so in its receipt (docs/protocol.md "Receipts"): ``high_seq`` (its
highest stored seq of the batch's epoch), ``max_epoch`` and ``conflicts``/``conflict_seqs``. The
node then starts a new epoch at once and re-puts the conflicting readings there (docs/buffer.md
"Epochs and collisions").

The buffer file keeps one seq space; an epoch change starts a new *segment* of it: readings below
the segment's first seq keep the epoch they were numbered in (sent again they are duplicates or
conflicts, judged by the central one by one), readings from it on belong to the new epoch.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.model import Gap

MAX_FILE_EPOCH = (1 << 40) - 1  # file epochs stay below the volatile ones (node/buffer/overflow.py)
# `streetnode provision` starts a cloned card at a random epoch in this range: two cards made from
# one image never number the same epoch, and max(own, max_epoch) + 1 stays far below 2^40
PROVISION_EPOCH_RANGE = (1 << 32, 1 << 38)


def new_buffer_id() -> str:
    """A random 128-bit id, hex: made with the buffer database, kept in its meta."""
    return secrets.token_hex(16)


def provision_epoch() -> int:
    lo, hi = PROVISION_EPOCH_RANGE
    return lo + secrets.randbelow(hi - lo)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a 200 answer says about the node's numbering (missing keys: nothing known)."""

    high_seq: int | None = None
    max_epoch: int | None = None
    conflicts: int = 0
    conflict_seqs: tuple[int, ...] = ()

    @classmethod
    def from_answer(cls, answer: Any) -> Receipt:
        """The receipt fields of a 200 answer (`node.protocol.parse_ingest_answer`: an older central's
        answer has none). Raises `ProtocolError` naming a field of the wrong type."""
        from node.protocol import parse_ingest_answer

        parsed = parse_ingest_answer(answer)
        return cls(parsed.high_seq, parsed.max_epoch, parsed.conflicts, parsed.conflict_seqs)

    def collides(self, own_top: int) -> bool:
        """The central holds seqs of this epoch the buffer never handed out, or other content."""
        return self.conflicts > 0 or (self.high_seq is not None and self.high_seq > own_top)

    @property
    def complete(self) -> bool:
        """Every conflicting seq is listed (the central lists at most 1,000)."""
        return len(self.conflict_seqs) >= self.conflicts


class Segments:
    """Which epoch each seq of the file belongs to: ascending ``(first_seq, epoch)`` pairs, the last
    one the current epoch. Stored in the buffer's meta as JSON (``segments``)."""

    def __init__(self, pairs: Sequence[tuple[int, int]]) -> None:
        self.pairs: list[tuple[int, int]] = sorted((int(f), int(e)) for f, e in pairs) or [(0, 0)]

    @classmethod
    def load(cls, text: Any, epoch: int) -> Segments:
        """From meta; no or bad text: the whole file is ``epoch``. The current epoch is ``epoch``."""
        pairs: list[tuple[int, int]] = []
        if isinstance(text, str):
            try:
                raw = json.loads(text)
                pairs = [(int(f), int(e)) for f, e in raw]
            except (ValueError, TypeError):
                pairs = []
        if not pairs or pairs[-1][1] != epoch:
            pairs = [(0, epoch)]
        return cls(pairs)

    def dump(self) -> str:
        return json.dumps([list(p) for p in self.pairs], separators=(",", ":"))

    @property
    def current(self) -> int:
        return self.pairs[-1][1]

    def epoch_of(self, seq: int) -> int:
        epoch = self.pairs[0][1]
        for first, e in self.pairs:
            if first > seq:
                break
            epoch = e
        return epoch

    def bounds(self, seq: int) -> tuple[int, int]:
        """(first, last) seq of the segment holding ``seq`` (last of the current one: 2^62)."""
        lo, hi = self.pairs[0][0], 1 << 62
        for k, (first, _) in enumerate(self.pairs):
            if first > seq:
                break
            lo = first
            hi = self.pairs[k + 1][0] - 1 if k + 1 < len(self.pairs) else 1 << 62
        return lo, hi

    def start(self, first_seq: int, epoch: int) -> None:
        """A new current epoch from ``first_seq`` on."""
        if self.pairs[-1][0] >= first_seq:  # the current segment holds nothing yet: relabel it
            self.pairs[-1] = (self.pairs[-1][0], epoch)
        else:
            self.pairs.append((first_seq, epoch))

    def prune(self, lowest_present: int | None, claimed: Sequence[int] = ()) -> None:
        """Forget segments below the lowest seq still in the file (or still claimed)."""
        lows = [s for s in (lowest_present, *claimed) if s is not None]
        low = min(lows) if lows else 1 << 62
        while len(self.pairs) > 1 and self.pairs[1][0] <= low:
            self.pairs.pop(0)

    def split(self, seqs: Sequence[int]) -> list[tuple[int, list[int]]]:
        """The sorted ``seqs`` grouped by epoch: [(epoch, seqs of it)], in seq order."""
        out: list[tuple[int, list[int]]] = []
        for seq in seqs:
            epoch = self.epoch_of(seq)
            if not out or out[-1][0] != epoch:
                out.append((epoch, []))
            out[-1][1].append(seq)
        return out


def next_epoch(own: int, receipt: Receipt, on_file: int = 0) -> int:
    """``max(own epoch, the central's max_epoch, the epoch file) + 1``."""
    return max(own, receipt.max_epoch or 0, on_file) + 1


def collision_detail(epoch: int, own_top: int, receipt: Receipt, new_epoch: int, moved: int,
                     first_new_seq: int, kind: str) -> str:
    """The incident's detail: one English line naming the epochs and seqs."""
    why = ("the buffer rolled back" if kind == "buffer_rollback"
           else "another device numbers the same epoch")
    held = "none" if receipt.high_seq is None else str(receipt.high_seq)
    text = (f"epoch {epoch}: the central holds seqs up to {held}, this buffer handed out up to "
            f"{own_top}; {receipt.conflicts} conflicting readings")
    if receipt.conflict_seqs:
        text += f" (seq {receipt.conflict_seqs[0]}..{receipt.conflict_seqs[-1]})"
    text += f" ({why}); new epoch {new_epoch} from seq {first_new_seq}"
    if moved:
        text += f", {moved} readings put again there with their stamps and values"
    return text


@dataclass(frozen=True, slots=True)
class Settled:
    """What `ack_receipt` did with a batch."""

    acked: bool  # the batch left the claims: acknowledged (False: unknown id, or released on error)
    new_epoch: int | None = None  # the epoch started because of this batch
    moved: int = 0  # conflicting readings put again in the current epoch (new seqs, same content)
    released: int = 0  # readings given back to be sent again (the conflict list was cut at 1,000)
    kind: str | None = None  # the incident recorded: buffer_rollback or identity_clash
    detail: str | None = None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def unacked_gaps(known: Mapping[str, Any], reason: str) -> list[Gap]:
    """Gaps over the seqs a state file says were handed out and not yet acknowledged: (acked, top],
    each part in the epoch of its segment."""
    top = as_int(known.get("top")) or 0
    acked = as_int(known.get("acked")) or 0
    epoch = as_int(known.get("epoch")) or 0
    if top <= acked or epoch <= 0:
        return []
    raw = known.get("segments")
    pairs = [(int(f), int(e)) for f, e in raw] if isinstance(raw, list) and raw and all(
        isinstance(p, list) and len(p) == 2 and all(as_int(x) is not None for x in p) for p in raw) else []
    segments = Segments(pairs) if pairs and pairs[-1][1] == epoch else Segments([(0, epoch)])
    gaps = []
    for k, (first, ep) in enumerate(segments.pairs):
        end = segments.pairs[k + 1][0] - 1 if k + 1 < len(segments.pairs) else top
        lo, hi = max(first, acked + 1), min(end, top)
        if lo <= hi:
            gaps.append(Gap(ep, lo, hi, hi - lo + 1, None, None, reason))
    return gaps
