"""Records the central would refuse are repaired on the node, before they are sent.

One incident detail longer than the central accepts would make every batch a 422 (each batch
carries the pending incidents), and a NUL in it is stored by SQLite but refused by PostgreSQL. So
what the node sends is made to fit the limits of docs/protocol.md (`node.protocol` constants):
strings without NUL or lone surrogates, cut to their length with a marker that says how much was
cut, health with at most `MAX_HEALTH_KEYS` scalar keys. Readings are never altered here: their
values and identities are the data (the sampler keeps them finite; the encoder checks the rest).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from node.model import Batch, Gap, Incident
from node.protocol import MAX_DETAIL, MAX_HEALTH_KEYS, MAX_STR

MAX_KIND = 64  # incident kind, gap reason, health key (docs/protocol.md: strings bounded)
# health keys the central shows (contract 3): kept first when a snapshot has too many keys
KNOWN_HEALTH = ("backlog_readings", "oldest_reading_age_s", "firmware", "config_hash", "storm",
                "clock_synced", "clock_offset_ms", "alert")


def clean_text(text: str, limit: int) -> str:
    """``text`` without NUL/lone surrogates, at most ``limit`` characters (cut with a marker)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8, the encoder would refuse them
        text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) <= limit:
        return text
    if limit < MAX_STR:  # a kind or a reason: a word, not a sentence about it
        return text[:limit - 1] + "…"
    marker = f"... [{len(text) - limit} more characters cut by the node]"
    keep = max(0, limit - len(marker) - 16)  # the marker's count may grow by a digit or two
    marker = f"... [{len(text) - keep} more characters cut by the node]"
    return text[:keep] + marker


def fit_incident(i: Incident) -> Incident:
    kind = clean_text(i.kind, MAX_KIND) or "unknown"
    detail = clean_text(i.detail, MAX_DETAIL)
    count = i.count if i.count is None or i.count >= 0 else None
    if (kind, detail, count) == (i.kind, i.detail, i.count):
        return i
    return dataclasses.replace(i, kind=kind, detail=detail, count=count)


# reasons older buffers wrote that the protocol does not list: what they mean in GAP_REASONS
REASON_ALIASES = {"disk_error": "overflow"}


def fit_gap(g: Gap) -> Gap:
    reason = REASON_ALIASES.get(g.reason) or clean_text(g.reason, MAX_KIND) or "unknown"
    return g if reason == g.reason else dataclasses.replace(g, reason=reason)


def fit_records(batch: Batch) -> Batch:
    """``batch`` with every gap and incident made acceptable; same order, same count (a refusal
    naming ``incidents[i]`` still points at the i-th record the buffer handed out)."""
    gaps = [fit_gap(g) for g in batch.gaps]
    incidents = [fit_incident(i) for i in batch.incidents]
    if all(a is b for a, b in zip(gaps, batch.gaps, strict=True)) and \
            all(a is b for a, b in zip(incidents, batch.incidents, strict=True)):
        return batch
    return dataclasses.replace(batch, gaps=gaps, incidents=incidents)


def fit_health(health: Mapping[str, Any], refused: Iterable[str] = ()) -> dict[str, Any]:
    """Scalars only, finite numbers, bounded strings, at most `MAX_HEALTH_KEYS` keys (the
    contract's keys first); keys the central refused (a signed 422 naming them) left out."""
    skip = set(refused)
    out: dict[str, Any] = {}
    ordered = [k for k in KNOWN_HEALTH if k in health] + [k for k in health if k not in KNOWN_HEALTH]
    for key in ordered:
        if len(out) >= MAX_HEALTH_KEYS:
            break
        if not isinstance(key, str) or key in skip:
            continue
        name = clean_text(key, MAX_KIND)
        value = health[key]
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, str):
            value = clean_text(value, MAX_STR)
        elif value is not None and not isinstance(value, bool | int | float):
            value = clean_text(str(value), MAX_STR)
        out[name] = value
    return out
