"""Readings for the SensorThings tests, stored through real signed uploads (node/protocol.py)."""

from __future__ import annotations

import time

import requests

from drivers.quality import Quality
from node import protocol
from node.model import Batch, Reading

KEYS = {"pole-1": bytes(range(1, 33)), "pole-2": bytes(range(2, 34))}
LOCATED = {"firmware": "0.3.1", "location_lat": 10.7769, "location_lon": 106.7009,
           "location_ward": "Ben Nghe", "location_label": "Le Loi x Nguyen Hue"}
UNLOCATED = {"firmware": "0.3.0"}
START_MS = 1_764_100_000_000  # 2025-11-25T19:46:40Z
STEP_MS = 10_000
CHANNELS = ("weather.temperature_c", "weather.humidity_pct", "air.pm2_5_ugm3")


def now_ms() -> int:
    return int(time.time() * 1000)


def value_of(channel: str, i: int) -> float | None:
    if channel == "air.pm2_5_ugm3":
        return None if i % 17 == 5 else float(10 + (i * 7) % 50)  # every 17th: a sensor fault
    if channel == "weather.temperature_c":
        return round(25 + ((i * 37) % 200) / 100 - 1, 2)
    return round(60 + ((i * 13) % 300) / 10, 2)


def flags_of(channel: str, i: int) -> int:
    if value_of(channel, i) is None:
        return int(Quality.FAULT)
    return int(Quality.CLOCK_CORRECTED) if i % 11 == 3 else 0


def readings(cycles: int, *, first_cycle: int = 0, first_seq: int = 0) -> list[Reading]:
    out = []
    seq = first_seq
    for i in range(first_cycle, first_cycle + cycles):
        for ch in CHANNELS:
            out.append(Reading(seq, ch, value_of(ch, i), flags_of(ch, i), START_MS + i * STEP_MS,
                               500_000 + i * STEP_MS, "boot-a"))
            seq += 1
    return out


def upload(url: str, node: str, epoch: int, batch_readings: list[Reading], health: dict) -> dict:
    body = protocol.encode_batch(Batch(1, node, epoch, batch_readings), health=health, sent_ms=now_ms())
    headers = dict(protocol.BODY_HEADERS)
    headers.update(protocol.sign_request(KEYS[node], "POST", protocol.INGEST_PATH, body, now_ms(),
                                         node_id=node))
    r = requests.post(url + protocol.INGEST_PATH, data=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def fill(store, url: str, cycles: int = 120) -> dict[tuple[str, int, int], Reading]:
    """pole-1 (located): ``cycles`` cycles in two epochs; pole-2 (no location): 10 cycles.

    Returns every reading sent, by (node, epoch, seq).
    """
    for node in KEYS:
        store.add_node(node, KEYS[node], now_ms())
    sent: dict[tuple[str, int, int], Reading] = {}
    half = cycles // 2
    first = readings(half)
    second = readings(cycles - half, first_cycle=half)
    for epoch, part in ((1, first), (2, second)):
        for chunk in (part[: len(part) // 2], part[len(part) // 2:]):
            upload(url, "pole-1", epoch, chunk, LOCATED)
        sent.update({("pole-1", epoch, r.seq): r for r in part})
    other = readings(10)
    upload(url, "pole-2", 1, other, UNLOCATED)
    sent.update({("pole-2", 1, r.seq): r for r in other})
    return sent
