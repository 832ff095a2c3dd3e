"""The least-squares slope of (time, value) points: the pressure trend of storm mode
(node/storm.py) and the rate of rise of a ranger's depths (node/depth.py) are the same fit."""

from __future__ import annotations

from collections.abc import Collection


def slope_per_s(points: Collection[tuple[float, float]]) -> float | None:
    """Value units per second of the least-squares line through ``points`` (time in seconds);
    None with fewer than two points or when they all share one time."""
    n = len(points)
    if n < 2:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var
