"""What every driver returns: a `Measurement` (quantity -> value) with quality flags."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from drivers.quality import Quality, names


class Measurement(Mapping[str, float | None]):
    """A mapping quantity -> value (``temperature_c``, ``depth_cm``...) with ``.flags``.

    ``flags[q]`` holds `drivers.quality.Quality` bits for quantity ``q`` (0 = ok); a value
    of None always carries `Quality.FAULT`. Quantities are also readable as attributes.
    """

    __slots__ = ("_values", "flags", "sensor")

    def __init__(self, values: Mapping[str, float | None], flags: Mapping[str, int] | None = None,
                 *, sensor: str | None = None) -> None:
        self._values: dict[str, float | None] = dict(values)
        given = dict(flags or {})
        self.flags: dict[str, int] = {}
        for q, v in self._values.items():
            bits = int(given.get(q, 0))
            if v is None:
                bits |= Quality.FAULT
            self.flags[q] = bits
        self.sensor = sensor

    @classmethod
    def failed(cls, quantities: Iterable[str], extra: int = 0, *, sensor: str | None = None) -> Measurement:
        """Every quantity None, flagged FAULT (plus ``extra`` bits)."""
        qs = list(quantities)
        return cls(dict.fromkeys(qs), dict.fromkeys(qs, int(Quality.FAULT | extra)), sensor=sensor)

    def __getitem__(self, key: str) -> float | None:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> float | None:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def ok(self) -> bool:
        """True when no quantity has any flag set."""
        return not any(self.flags.values())

    def __repr__(self) -> str:
        parts = []
        for q, v in self._values.items():
            f = self.flags.get(q, 0)
            parts.append(f"{q}={v!r}" + (f"[{'|'.join(names(f))}]" if f else ""))
        return f"Measurement({self.sensor or ''}: {', '.join(parts)})"


class Sensor(Protocol):
    """The shape every sensor driver has (constructor stores only; no I/O)."""

    name: str
    quantities: tuple[str, ...]

    def probe(self) -> None: ...

    def read(self) -> Measurement: ...

    def close(self) -> None: ...


class StuckDetector:
    """Flags a raw value that has not changed for ``reads`` reads spanning ``after_s`` seconds."""

    def __init__(self, reads: int = 5, after_s: float = 0.0) -> None:
        self.reads, self.after_s = reads, after_s
        self._last: object = None
        self._count = 0
        self._since = 0.0

    def update(self, raw: object, now: float) -> bool:
        if raw == self._last:
            self._count += 1
        else:
            self._last, self._count, self._since = raw, 1, now
        return self._count >= self.reads and now - self._since >= self.after_s

    def reset(self) -> None:
        self._last, self._count = None, 0
