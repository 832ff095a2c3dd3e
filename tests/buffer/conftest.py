"""Fixtures of the buffer tests: one contract, every implementation, real files on tmp_path."""

from __future__ import annotations

import pytest

from node.buffer import MemoryBuffer, SqliteBuffer
from node.model import Sample, Stamp

CHANNELS = ["weather.temperature_c", "weather.humidity_pct", "weather.pressure_hpa",
            "air.pm2_5_ugm3", "flood.depth_cm"]


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cycle(i: int, n: int = len(CHANNELS)) -> list[Sample]:
    return [Sample(CHANNELS[k % len(CHANNELS)], round(i + k / 100, 2), k % 2) for k in range(n)]


def stamp(i: int, *, synced: bool = True, boot: str = "boot-a") -> Stamp:
    return Stamp(1_700_000_000_000 + i * 10_000, 5_000 + i * 10_000, boot, synced)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def make_buffer(request, tmp_path, clock):
    made = []

    def make(**kw):
        if request.param == "memory":
            kw.pop("max_size", None)
            b = MemoryBuffer("node-1", clock=clock, **kw)
        else:
            kw.pop("max_readings", None)
            b = SqliteBuffer(tmp_path / "buffer.db", "node-1", clock=clock, timer=clock, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def buffer(make_buffer):
    return make_buffer()
