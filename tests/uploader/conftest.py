"""Fixtures of the uploader tests: a real SqliteBuffer on tmp_path, the real receiver on loopback
(optionally behind the fault proxy), and helpers to fill the buffer and read what the central stored."""

from __future__ import annotations

import secrets
import time

import pytest

from central.server import serve_in_thread
from central.store import open_store
from node.buffer import SqliteBuffer
from node.model import Sample, Stamp
from tests.support.faultproxy import FaultProxy

NODE = "hn-test-0001"
CHANNELS = ["weather.temperature_c", "weather.humidity_pct", "air.pm2_5_ugm3", "flood.depth_cm",
            "rain.rain_mm"]


def fill(buf, cycles: int, *, start: int = 0, now_ms: int | None = None) -> int:
    """Put ``cycles`` sampling cycles of len(CHANNELS) readings, 10 s apart, ending near now."""
    base = (now_ms if now_ms is not None else int(time.time() * 1000)) - (start + cycles) * 10_000
    for i in range(start, start + cycles):
        samples = [Sample(ch, round(20 + (i % 97) / 10 + k, 1)) for k, ch in enumerate(CHANNELS)]
        buf.put(samples, Stamp(base + i * 10_000, 1_000 + i * 10_000, "boot-a", True))
    return cycles * len(CHANNELS)


class Central:
    def __init__(self, tmp_path, **app_options):
        self.store = open_store(f"sqlite:///{tmp_path}/central.db")
        self.key = secrets.token_bytes(32)
        self.store.add_node(NODE, self.key, int(time.time() * 1000))
        self.url, self._stop = serve_in_thread(self.store, **app_options)
        self.port = int(self.url.rsplit(":", 1)[1])

    def seqs(self, epoch: int = 1) -> list[int]:
        return self.store.seqs(NODE, epoch)

    def close(self) -> None:
        self._stop()
        self.store.close()


@pytest.fixture
def make_central(tmp_path):
    made = []

    def make(**app_options):
        c = Central(tmp_path, **app_options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def central(make_central):
    return make_central()


@pytest.fixture
def proxy(central):
    with FaultProxy(central.port, lifetime=60, record=1000) as p:
        yield p


@pytest.fixture
def buf(tmp_path):
    b = SqliteBuffer(tmp_path / "buffer.db", NODE)
    b.open()
    yield b
    b.close()
