"""The least-squares slope of (time, value) points: the pressure trend of storm mode
(node/storm.py) and the rate of rise of a ranger's depths (node/depth.py) are the same fit."""

from __future__ import annotations

from collections.abc import Sequence


def slope_per_s(points: Sequence[tuple[float, float]], *, min_points: int = 2,
                min_span_s: float = 0.0) -> float | None:
    """Value units per second of the least-squares line through ``points`` (time in seconds,
    oldest first); None without enough history (fewer than ``min_points`` points, or spanning
    less than ``min_span_s``) or when they all share one time."""
    n = len(points)
    if n < max(2, min_points) or points[-1][0] - points[0][0] < min_span_s:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var
