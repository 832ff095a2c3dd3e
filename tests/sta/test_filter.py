"""The $filter parser alone: what it builds, and errors that name the position."""

from __future__ import annotations

import pytest

from central.sta.errors import BadQuery
from central.sta.filter import Compare, Literal, Logical, Not, Prop, parse_datetime_ms, parse_filter


def test_precedence_and_binds_tighter_than_or():
    tree = parse_filter("result gt 1 or result lt 0 and not (phenomenonTime ge 2026-01-01T00:00:00Z)")
    assert isinstance(tree, Logical) and tree.op == "or"
    left, right = tree.items
    assert left == Compare("gt", Prop("result", 0), Literal("number", 1, "1"), 7)
    assert isinstance(right, Logical) and right.op == "and"
    assert isinstance(right.items[1], Not)
    inner = right.items[1].item
    assert inner.right == Literal("datetime", 1_767_225_600_000, "2026-01-01T00:00:00Z")


@pytest.mark.parametrize("text, kind, value", [
    ("'it''s'", "string", "it's"),
    ("-2.5", "number", -2.5),
    ("1e3", "number", 1000.0),
    ("42", "number", 42),
    ("2026-11-25T10:00:00.123+07:00", "datetime", 1_795_575_600_123),
    ("2026-11-25", "datetime", 1_795_564_800_000),
    ("true", "bool", True),
    ("null", "null", None),
])
def test_literals(text, kind, value):
    tree = parse_filter(f"result eq {text}")
    assert (tree.right.kind, tree.right.value) == (kind, value)


def test_paths_and_literal_on_the_left():
    tree = parse_filter("5 lt Datastream/@iot.id")
    assert tree.left == Literal("number", 5, "5") and tree.right == Prop("Datastream/@iot.id", 5)


@pytest.mark.parametrize("text, words", [
    ("result gt", "expected a property, a value or '(' at the end"),
    ("result", "expected a comparison operator"),
    ("result gt 1 and", "at the end"),
    ("result gt 1 result", "unexpected 'result'; expected 'and', 'or' or the end at position 12"),
    ("(result gt 1", "expected ')' at the end"),
    ("result gt #", "unexpected character '#' at position 10"),
    ("1 eq 2", "needs a property on one side"),
    ("round(result) eq 1", "function 'round' is not supported"),
    ("result mul 2 gt 1", "arithmetic operator 'mul'"),
    ("result eq 'open", "unexpected character"),
    ("result eq and", "got the operator 'and'"),
    ("(result gt 1) eq 2", "a property or value on each side"),
    ("", "empty expression"),
    ("(" * 40 + "result gt 1" + ")" * 40, "nested deeper than 32 levels"),
    ("result eq " + "1" * 5000, "longer than 4096 characters"),
])
def test_errors_name_what_and_where(text, words):
    with pytest.raises(BadQuery) as err:
        parse_filter(text)
    assert words in err.value.message and err.value.field == "$filter"


def test_datetime_precision_is_kept_to_the_millisecond():
    assert parse_datetime_ms("2025-11-25T19:46:40.001Z") == 1_764_100_000_001
