"""How readings become MQTT messages: ThingsBoard's gateway API or a plain topic per channel.

Both are deterministic: the same readings always give byte-identical messages, and ``ts`` is the
reading's own time, so a resend after a crash overwrites the same (device, key, ts) points in
ThingsBoard instead of adding new ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from node.model import flag_names

TB_CONNECT = "v1/gateway/connect"
TB_TELEMETRY = "v1/gateway/telemetry"
TB_ATTRIBUTES = "v1/gateway/attributes"
DEVICE_TYPE = "streetnode"
_TOPIC_UNSAFE = re.compile(r"[+#\x00]")


@dataclass(frozen=True)
class FwdReading:
    node_id: str
    epoch: int
    seq: int
    channel: str
    value: float | None
    flags: int
    wall_ms: int


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False
    readings: int = 0  # how many readings it carries (for counting)


class TooLarge(ValueError):
    """One reading's message alone exceeds the sink's size limit."""


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def topic_level(text: str) -> str:
    """A node id or channel name made safe as one topic level (no wildcard, no '/')."""
    return _TOPIC_UNSAFE.sub("_", text).replace("/", "_")


def attributes_of(health: dict[str, Any]) -> dict[str, Any]:
    """The node's health as device attributes (location keys under short names)."""
    out = {}
    for key, value in sorted(health.items()):
        short = key[len("location_"):] if key.startswith("location_") else key
        out[short] = value
    return out


class ThingsBoardLayout:
    """``v1/gateway/telemetry`` ``{"pole-1": [{"ts": ms, "values": {...}}]}``, one entry per
    (node, time); a faulted reading sends its flags (``<channel>.flags``) and no value."""

    name = "thingsboard"

    def __init__(self, max_message_bytes: int) -> None:
        self.max_bytes = max_message_bytes

    def connect_messages(self, nodes: Iterable[str]) -> list[Message]:
        return [Message(TB_CONNECT, _dumps({"device": n, "type": DEVICE_TYPE})) for n in nodes]

    def attribute_messages(self, node_id: str, health: dict[str, Any]) -> list[Message]:
        return [Message(TB_ATTRIBUTES, _dumps({node_id: attributes_of(health)}))]

    def reading_messages(self, readings: list[FwdReading]) -> list[Message]:
        entries: list[tuple[str, int, dict[str, Any], int]] = []  # (node, ts, values, count), in order
        index: dict[tuple[str, int], int] = {}
        for r in readings:
            key = (r.node_id, r.wall_ms)
            at = index.get(key)
            if at is None:
                at = index[key] = len(entries)
                entries.append((r.node_id, r.wall_ms, {}, 0))
            node, ts, values, count = entries[at]
            if r.value is not None:
                values[r.channel] = r.value
            if r.flags:
                values[f"{r.channel}.flags"] = r.flags
            entries[at] = (node, ts, values, count + 1)
        return self._pack(entries)

    def _pack(self, entries: list[tuple[str, int, dict[str, Any], int]]) -> list[Message]:
        """Consecutive entries in as few messages as fit the size limit (order kept)."""
        messages: list[Message] = []
        doc: dict[str, list[dict[str, Any]]] = {}
        size, count = 2, 0
        for node, ts, values, n in entries:
            item = {"ts": ts, "values": values}
            item_size = len(_dumps(item)) + 1
            head = 0 if node in doc else len(_dumps(node)) + 3
            if doc and size + head + item_size > self.max_bytes:
                messages.append(Message(TB_TELEMETRY, _dumps(doc), readings=count))
                doc, size, count = {}, 2, 0
                head = len(_dumps(node)) + 3
            if size + head + item_size > self.max_bytes:
                raise TooLarge(f"one telemetry entry of {node} at {ts} needs {head + item_size + 2} bytes, "
                               f"more than max_message_bytes = {self.max_bytes}")
            doc.setdefault(node, []).append(item)
            size += head + item_size
            count += n
        if doc:
            messages.append(Message(TB_TELEMETRY, _dumps(doc), readings=count))
        return messages


class PlainLayout:
    """``<prefix>/<node>/<channel>`` ``{"ts", "value", "flags", "quality", "id"}``, one message per
    reading; ``<prefix>/<node>/attributes`` (retained) with the node's last health."""

    name = "plain"

    def __init__(self, prefix: str, max_message_bytes: int) -> None:
        self.prefix = prefix.rstrip("/")
        self.max_bytes = max_message_bytes

    def connect_messages(self, nodes: Iterable[str]) -> list[Message]:
        return []

    def attribute_messages(self, node_id: str, health: dict[str, Any]) -> list[Message]:
        return [Message(f"{self.prefix}/{topic_level(node_id)}/attributes", _dumps(attributes_of(health)),
                        retain=True)]

    def reading_messages(self, readings: list[FwdReading]) -> list[Message]:
        out = []
        for r in readings:
            payload = _dumps({"ts": r.wall_ms, "value": r.value, "flags": r.flags,
                              "quality": flag_names(r.flags), "id": f"{r.node_id}:{r.epoch}:{r.seq}"})
            if len(payload) > self.max_bytes:
                raise TooLarge(f"reading {r.node_id}:{r.epoch}:{r.seq} needs {len(payload)} bytes, more than "
                               f"max_message_bytes = {self.max_bytes}")
            out.append(Message(f"{self.prefix}/{topic_level(r.node_id)}/{topic_level(r.channel)}", payload,
                               readings=1))
        return out


def make_layout(name: str, *, prefix: str, max_message_bytes: int) -> ThingsBoardLayout | PlainLayout:
    if name == "thingsboard":
        return ThingsBoardLayout(max_message_bytes)
    return PlainLayout(prefix, max_message_bytes)
