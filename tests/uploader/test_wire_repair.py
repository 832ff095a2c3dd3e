"""Records are made to fit the protocol's limits before they are sent (node/wire_repair.py)."""

from __future__ import annotations

import math

from node.model import Batch, Gap, Incident
from node.protocol import GAP_REASONS, MAX_DETAIL, MAX_HEALTH_KEYS
from node.wire_repair import clean_text, fit_health, fit_records


def test_clean_text_cuts_with_a_marker_and_removes_what_cannot_travel():
    assert clean_text("ok", 10) == "ok"
    cut = clean_text("x" * 5000, MAX_DETAIL)
    assert len(cut) <= MAX_DETAIL and cut.endswith("more characters cut by the node]")
    assert "\x00" not in clean_text("a\x00b", 10) and clean_text("a\x00b", 10) == "a\\0b"
    assert clean_text("lone \ud800 surrogate", 100).encode("utf-8")


def test_fit_records_keeps_order_and_count_and_maps_old_reasons():
    batch = Batch(1, "n", 1, [], [Gap(1, 1, 2, 2, None, None, "disk_error"), Gap(1, 5, 5, 1, None, None,
                                                                                "rejected")],
                  [Incident(1, 0, "k" * 100, "d" * 5000, -3), Incident(2, 0, "ok", "fine", 1)])
    fit = fit_records(batch)
    assert [g.reason for g in fit.gaps] == ["overflow", "rejected"] and all(g.reason in GAP_REASONS
                                                                             for g in fit.gaps)
    assert [i.id for i in fit.incidents] == [1, 2]
    assert len(fit.incidents[0].kind) == 64 and fit.incidents[0].kind.endswith("k…")
    assert fit.incidents[0].count is None
    assert fit.incidents[1] is batch.incidents[1]
    untouched = Batch(2, "n", 1, [], [Gap(1, 1, 1, 1, None, None, "rejected")], [])
    assert fit_records(untouched) is untouched


def test_fit_health_is_scalar_finite_bounded_and_leaves_refused_keys_out():
    health = {f"k{i}": i for i in range(100)}
    health.update(firmware="0.1.0", oldest_reading_age_s=math.nan, label="x" * 999, obj={"a": 1})
    fit = fit_health(health, refused=["k3"])
    assert len(fit) == MAX_HEALTH_KEYS and "k3" not in fit
    assert fit["firmware"] == "0.1.0" and fit["oldest_reading_age_s"] is None  # contract keys first
