"""Query options (``$top``, ``$skip``, ``$count``, ``$orderby``, ``$select``, ``$expand``,
``$filter``, ``$resultFormat``, ``$skiptoken``) parsed into a `QueryOptions`.

``$expand`` takes nested options in parentheses separated by ``;``
(``Datastreams($select=name;$expand=Observations($top=1;$orderby=phenomenonTime desc))``) and the
path form ``Datastreams/Observations``. Every bound is checked here, before any query runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from central.sta.errors import BadQuery
from central.sta.filter import Node, parse_filter

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_TOP_DATA_ARRAY = 10_000
MAX_SKIP = 10_000
MAX_EXPAND_DEPTH = 3
MAX_EXPAND_ITEMS = 8
KNOWN = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter", "$resultFormat",
         "$skiptoken")
NESTED = ("$top", "$skip", "$count", "$orderby", "$select", "$expand", "$filter")


@dataclass
class OrderKey:
    path: str
    descending: bool


@dataclass
class Expand:
    nav: str
    options: QueryOptions


@dataclass
class QueryOptions:
    top: int | None = None
    skip: int = 0
    count: bool = False
    orderby: list[OrderKey] = field(default_factory=list)
    select: list[str] | None = None
    expand: list[Expand] = field(default_factory=list)
    filter: Node | None = None
    result_format: str | None = None
    skiptoken: str | None = None
    raw: dict[str, str] = field(default_factory=dict)  # as given, to rebuild nextLinks

    def page_size(self) -> int:
        return DEFAULT_TOP if self.top is None else self.top


def split_top_level(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside parentheses and quoted strings."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise BadQuery(f"unbalanced ')' at position {i} in {text[:80]!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0 or quoted:
        raise BadQuery(f"unbalanced parentheses or quotes in {text[:80]!r}")
    parts.append(text[start:])
    return parts


def _int(name: str, text: str, hi: int) -> int:
    if not text.strip().isdigit():
        raise BadQuery(f"{name}: expected a whole number from 0 to {hi}, got {text[:40]!r}", field=name)
    value = int(text)
    if value > hi:
        raise BadQuery(f"{name}: at most {hi}, got {value}"
                       + ("; follow @iot.nextLink to page further" if name == "$skip" else ""), field=name)
    return value


def _orderby(text: str) -> list[OrderKey]:
    keys = []
    for item in split_top_level(text, ","):
        words = item.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise BadQuery(f"$orderby: expected 'property [asc|desc]', got {item.strip()[:60]!r}",
                           field="$orderby")
        keys.append(OrderKey(words[0], len(words) == 2 and words[1].lower() == "desc"))
    if len(keys) > 8:
        raise BadQuery("$orderby: at most 8 keys", field="$orderby")
    return keys


def _select(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",")]
    if not all(names):
        raise BadQuery(f"$select: expected comma-separated property names, got {text[:60]!r}",
                       field="$select")
    return names


def _expand(text: str, depth: int) -> list[Expand]:
    if depth > MAX_EXPAND_DEPTH:
        raise BadQuery(f"$expand: nested deeper than {MAX_EXPAND_DEPTH} levels", field="$expand")
    items = []
    for item in split_top_level(text, ","):
        item = item.strip()
        if not item:
            raise BadQuery("$expand: empty item", field="$expand")
        inner = ""
        head = item
        if "(" in item:
            head, _, rest = item.partition("(")
            if not rest.endswith(")"):
                raise BadQuery(f"$expand: expected ')' at the end of {item[:60]!r}", field="$expand")
            inner = rest[:-1]
        head = head.strip()
        nav, _, deeper = head.partition("/")
        if deeper:  # Datastreams/Observations == Datastreams($expand=Observations)
            if inner:
                deeper += f"({inner})"
            inner = f"$expand={deeper}"
        pairs = []
        for opt in split_top_level(inner, ";") if inner else []:
            name, eq, value = opt.partition("=")
            if not eq:
                raise BadQuery(f"$expand: expected $option=value inside {nav}(...), got {opt[:60]!r}",
                               field="$expand")
            name = name.strip()
            if name not in NESTED:
                raise BadQuery(f"$expand: option {name!r} is not allowed inside {nav}(...) "
                               f"(allowed: {', '.join(NESTED)})", field="$expand")
            pairs.append((name, value))
        items.append(Expand(nav, parse_options(pairs, depth=depth + 1)))
    if len(items) > MAX_EXPAND_ITEMS:
        raise BadQuery(f"$expand: at most {MAX_EXPAND_ITEMS} items per level", field="$expand")
    return items


def parse_options(pairs: Iterable[tuple[str, str]], *, depth: int = 0) -> QueryOptions:
    """`QueryOptions` from (name, value) pairs; other parameters (not starting with $) are ignored."""
    opts = QueryOptions()
    for name, value in pairs:
        if not name.startswith("$"):
            continue
        if name not in KNOWN:
            raise BadQuery(f"unknown query option {name!r} (supported: {', '.join(KNOWN)})", field=name)
        if name in opts.raw:
            raise BadQuery(f"{name}: given twice", field=name)
        opts.raw[name] = value
    raw = opts.raw
    if "$resultFormat" in raw:
        if raw["$resultFormat"].lower() != "dataarray":
            raise BadQuery(f"$resultFormat: only dataArray is supported, got {raw['$resultFormat'][:40]!r}",
                           field="$resultFormat")
        opts.result_format = "dataArray"
    if "$top" in raw:
        opts.top = _int("$top", raw["$top"], MAX_TOP_DATA_ARRAY if opts.result_format else MAX_TOP)
    if "$skip" in raw:
        opts.skip = _int("$skip", raw["$skip"], MAX_SKIP)
    if "$count" in raw:
        if raw["$count"] not in ("true", "false"):
            raise BadQuery(f"$count: expected true or false, got {raw['$count'][:40]!r}", field="$count")
        opts.count = raw["$count"] == "true"
    if "$orderby" in raw:
        opts.orderby = _orderby(raw["$orderby"])
    if "$select" in raw:
        opts.select = _select(raw["$select"])
    if "$expand" in raw:
        opts.expand = _expand(raw["$expand"], depth)
    if "$filter" in raw:
        opts.filter = parse_filter(raw["$filter"])
    if "$skiptoken" in raw:
        opts.skiptoken = raw["$skiptoken"]
    return opts
