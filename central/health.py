"""A node's last health document as the store keeps it (``nodes.health_json``), read the same way
by the console and the SensorThings API: the document, and where the node says it stands."""

from __future__ import annotations

import json
from typing import Any


def health_of(text: str | None) -> dict[str, Any]:
    """The stored health document; ``{}`` when there is none or it is not a JSON object."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def lat_lon(health: dict[str, Any]) -> tuple[float, float] | None:
    """``location_lat`` and ``location_lon`` when both are numbers (true/false are not), else None."""
    lat, lon = health.get("location_lat"), health.get("location_lon")
    for value in (lat, lon):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
    return float(lat), float(lon)
