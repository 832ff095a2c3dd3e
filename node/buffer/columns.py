"""A claim's readings kept as columns until they are read (issue #22, docs/buffer.md).

A drain holds two claimed batches of up to ``upload.max_batch_readings`` (5,000) readings while
one is in flight and the next is encoded. As `Reading` objects (with their seq and value objects)
they took ~150 bytes each of CPython's small-object arenas: ~3 MiB more at a drain's peak, and a
few long-lived objects allocated meanwhile (a counter, a log record, the new connection) keep
those 1 MiB arenas mapped for good, which the month soak saw as a 2.9 MiB step in RSS. Here a
batch is five `array` buffers (~30 bytes a reading, one malloc block each, given back whole when
the batch goes); a `Reading` is built when it is read and freed once used, so encoding reuses the
same few blocks. To its readers it is a read-only sequence of `Reading` equal to the list it
replaces (indexing, slicing, iteration, ``len``, ``==``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from node.model import Reading

NAN = math.nan  # the value column's entry for a reading without a value


class ClaimedReadings(Sequence[Reading]):
    """Readings in seq order; ``stamps[i]`` = (wall_ms, boot_ms, boot_id) of stamp index i."""

    __slots__ = ("_seqs", "_channel_ids", "_values", "_has_value", "_flags", "_stamp_ids", "_names",
                 "_stamps", "_make")

    def __init__(self, names: list[str], stamps: list[tuple[int, int, str]],
                 make: Callable[..., Reading] = Reading) -> None:
        self._seqs = array("q")
        self._channel_ids = array("H")
        self._values = array("d")
        self._has_value = array("b")
        self._flags = array("q")
        self._stamp_ids = array("l")
        self._names = names
        self._stamps = stamps
        self._make = make

    def appenders(self) -> tuple[Callable[[Any], None], ...]:
        """The columns' ``append`` methods, for a loop that fills them: (seq, channel index,
        value (NaN for none), has value (0/1), flags, stamp index)."""
        return (self._seqs.append, self._channel_ids.append, self._values.append,
                self._has_value.append, self._flags.append, self._stamp_ids.append)

    def seqs(self) -> Sequence[int]:
        """The readings' seqs (rising, as claimed; the encoder checks), without building readings."""
        return self._seqs

    def _reading(self, i: int) -> Reading:
        wall_ms, boot_ms, boot_id = self._stamps[self._stamp_ids[i]]
        value = self._values[i] if self._has_value[i] else None
        return self._make(self._seqs[i], self._names[self._channel_ids[i]], value, self._flags[i],
                          wall_ms, boot_ms, boot_id)

    def __len__(self) -> int:
        return len(self._seqs)

    @overload
    def __getitem__(self, index: int) -> Reading: ...

    @overload
    def __getitem__(self, index: slice) -> list[Reading]: ...

    def __getitem__(self, index: int | slice) -> Reading | list[Reading]:
        if isinstance(index, slice):
            return [self._reading(i) for i in range(*index.indices(len(self._seqs)))]
        n = len(self._seqs)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("reading index out of range")
        return self._reading(i)

    def __iter__(self) -> Iterator[Reading]:
        make, names, stamps = self._make, self._names, self._stamps
        for seq, channel_id, value, has_value, flags, stamp_id in zip(
                self._seqs, self._channel_ids, self._values, self._has_value, self._flags, self._stamp_ids,
                strict=True):
            wall_ms, boot_ms, boot_id = stamps[stamp_id]
            yield make(seq, names[channel_id], value if has_value else None, flags, wall_ms, boot_ms, boot_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]  # mutable while built, compared by value

    def __repr__(self) -> str:
        return f"ClaimedReadings({list(self)!r})"

    def __add__(self, other: Any) -> list[Reading]:
        return [*self, *other]

    def __radd__(self, other: Any) -> list[Reading]:
        return [*other, *self]
