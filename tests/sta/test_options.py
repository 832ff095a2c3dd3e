"""Query options: nesting, bounds, and what is refused before any query runs."""

from __future__ import annotations

import pytest

from central.sta.errors import BadQuery
from central.sta.options import parse_options, split_top_level


def test_nested_expand_with_options_and_path_form():
    opts = parse_options([("$expand", "Datastreams($select=name;$top=2;"
                                      "$expand=Observations($orderby=phenomenonTime desc;$top=1)),Locations"),
                          ("token", "ignored")])
    ds, loc = opts.expand
    assert (ds.nav, ds.options.select, ds.options.top) == ("Datastreams", ["name"], 2)
    [obs] = ds.options.expand
    assert obs.nav == "Observations" and obs.options.top == 1
    assert obs.options.orderby[0].path == "phenomenonTime" and obs.options.orderby[0].descending
    assert loc.nav == "Locations" and loc.options.expand == []
    [path_form] = parse_options([("$expand", "Datastreams/Observations($top=3)")]).expand
    assert path_form.nav == "Datastreams" and path_form.options.expand[0].options.top == 3


def test_raw_options_kept_for_next_links():
    opts = parse_options([("$top", "5"), ("$filter", "result gt 1"), ("$count", "true")])
    assert opts.raw == {"$top": "5", "$filter": "result gt 1", "$count": "true"} and opts.count


def test_data_array_allows_larger_pages():
    assert parse_options([("$resultFormat", "dataArray"), ("$top", "10000")]).top == 10_000
    with pytest.raises(BadQuery, match="at most 1000"):
        parse_options([("$top", "10000")])


@pytest.mark.parametrize("pairs, words", [
    ([("$top", "1"), ("$top", "2")], "$top: given twice"),
    ([("$expand", "A($expand=B($expand=C($expand=D($expand=E))))")], "nested deeper than 3"),
    ([("$expand", "Datastreams($top=1")], "unbalanced"),
    ([("$expand", "Datastreams($top)")], "expected $option=value"),
    ([("$expand", "Datastreams(top=1)")], "option 'top' is not allowed inside"),
    ([("$select", "name,,id")], "comma-separated"),
    ([("$orderby", "a asc b")], "expected 'property [asc|desc]'"),
])
def test_refused(pairs, words):
    with pytest.raises(BadQuery) as err:
        parse_options(pairs)
    assert words in err.value.message


def test_split_ignores_separators_in_quotes_and_parentheses():
    assert split_top_level("a(b,c),'x,y',d", ",") == ["a(b,c)", "'x,y'", "d"]
