"""Signed uploads of hand-made readings for the console's tests (and its browser test)."""

from __future__ import annotations

import time
from typing import Any

import requests

from node import protocol
from node.model import Batch, Gap, Reading
from tests.central.helpers import KEY, now_ms, post

LOCATIONS = {"pole-1": (21.0285, 105.8542, "Hoan Kiem", "Dinh Tien Hoang, pole 17"),
             "pole-2": (21.0245, 105.8412, "Ba Dinh", "Kim Ma, pole 3")}


def add_nodes(store: Any, names: list[str]) -> None:
    for name in names:
        store.add_node(name, KEY, now_ms())


def health_of(node: str, **extra: Any) -> dict[str, Any]:
    lat, lon, ward, label = LOCATIONS.get(node, (21.0 + hash(node) % 100 / 1000, 105.8, "Test", node))
    health = {"backlog_readings": 3, "oldest_reading_age_s": 12.0, "firmware": "streetnode 0.1.0",
              "config_hash": "0123456789abcdef", "location_lat": lat, "location_lon": lon,
              "location_ward": ward, "location_label": label, "storm": False, "clock_synced": True,
              "clock_offset_ms": 4}
    health.update(extra)
    return health


def upload(base: str, node: str, readings: list[tuple[str, float | None, int]], *, epoch: int = 1,
           first_seq: int = 0, health: dict[str, Any] | None = None, gaps: list[Gap] = (),
           flags: int = 0) -> dict[str, Any]:
    """Upload ``(channel, value, wall_ms)`` readings as seqs ``first_seq...``; returns the answer."""
    rows = [Reading(first_seq + i, channel, value, flags if value is not None else 8, wall_ms,
                    5_000 + i, "boot-a") for i, (channel, value, wall_ms) in enumerate(readings)]
    batch = Batch(first_seq + 1, node, epoch, rows, gaps=list(gaps))
    body = protocol.encode_batch(batch, health=health or health_of(node), sent_ms=now_ms())
    answer: requests.Response = post(base, body, key=KEY, node=node)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ago(seconds: float) -> int:
    return int(time.time() * 1000 - seconds * 1000)
