"""`node.protocol.parse_ingest_answer`: the numbering fields of a 200 ingest answer (#20)."""

from __future__ import annotations

import json

import pytest

from node import protocol
from node.protocol import IngestAnswer, ProtocolError, parse_ingest_answer
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text("utf-8"))


def test_the_vector_answer():
    doc = json.loads(VECTORS["receipt"]["response_body"])
    assert parse_ingest_answer(doc) == IngestAnswer(stored=9, duplicates=0, conflicts=0, conflict_seqs=(),
                                                    high_seq=145, max_epoch=4)
    assert doc["stored"] + doc["duplicates"] + doc["conflicts"] == doc["readings"]


def test_an_older_central_answers_no_numbering():
    old = {"stored": 3, "duplicates": 1, "gaps": 0, "incidents": 0, "readings": 4, "batch": 1, "epoch": 2,
           "server_time_ms": 1}
    assert parse_ingest_answer(old) == IngestAnswer(3, 1, 0, (), None, None)


def test_conflicts():
    got = parse_ingest_answer({"stored": 0, "duplicates": 0, "conflicts": 1500, "conflict_seqs": [9, 3],
                               "high_seq": 20, "max_epoch": 2})
    assert (got.conflicts, got.conflict_seqs, got.high_seq) == (1500, (3, 9), 20)


@pytest.mark.parametrize("doc, field", [
    ([], "body"),
    ({"high_seq": -1}, "high_seq"),
    ({"high_seq": "12"}, "high_seq"),
    ({"max_epoch": 1.5}, "max_epoch"),
    ({"conflicts": True}, "conflicts"),
    ({"conflicts": 1, "conflict_seqs": [1, 2]}, "conflict_seqs"),
    ({"conflicts": 1, "conflict_seqs": "1"}, "conflict_seqs"),
    ({"conflicts": 2000, "conflict_seqs": list(range(protocol.MAX_CONFLICT_SEQS + 1))}, "conflict_seqs"),
])
def test_a_wrong_field_is_named(doc, field):
    with pytest.raises(ProtocolError) as e:
        parse_ingest_answer(doc)
    assert e.value.field == field


def test_hole_reasons_are_gap_reasons():
    assert set(protocol.HOLE_REASONS) <= set(protocol.GAP_REASONS)
    assert protocol.HOLE_REASONS == ("buffer_rollback", "buffer_lost")
