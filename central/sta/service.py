"""Answers one SensorThings GET: resolve the path, query, render (JSON or dataArray).

Bounds, all checked before or while querying: ``$top`` ≤ 1000 (10,000 with dataArray), ``$skip``
≤ 10,000 (deeper pages through ``@iot.nextLink``), ``$expand`` 3 levels deep, at most
``max_entities`` entities in one response, and one deadline for all of a request's statements.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from central.sta.db import DEFAULT_REQUEST_TIMEOUT_S, ReadDb
from central.sta.errors import BadQuery, NotFound, TooExpensive
from central.sta.model import FIELDS, SET_ORDER, Cond, EntitySet, Row, build_model
from central.sta.options import QueryOptions, parse_options
from central.sta.paths import Segment, id_literal, parse_path
from central.sta.sqlbuild import (
    SortKey,
    compile_filter,
    count_sql,
    decode_cursor,
    encode_cursor,
    keyset_condition,
    select_sql,
    sort_keys,
)

SPEC = "http://www.opengis.net/spec/iot_sensing/1.1/req/"
CONFORMANCE = [SPEC + c for c in ("datamodel", "resource-path/resource-path-to-entities", "request-data",
                                  "data-array/data-array")]
DEFAULT_MAX_ENTITIES = 10_000
ID_NAMES = ("id", "@iot.id")
PATH_SAFE = "/()':,@$!*+;=-._~"
DATA_ARRAY_COMPONENTS = ("id", "phenomenonTime", "result", "resultTime", "resultQuality", "validTime",
                         "parameters")


@dataclass
class _Ctx:
    base: str  # .../sta/v1.1
    deadline: float
    budget: int

    def spend(self, n: int, limit: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise TooExpensive(f"the response would hold more than {limit} entities; use a smaller $top, "
                               "or $top inside $expand(...)")

    def link(self, eset: EntitySet, entity_id: str) -> str:
        return f"{self.base}/{eset.name}({id_literal(entity_id)})"


@dataclass
class _Target:
    eset: EntitySet
    conds: list[Cond]
    single: bool
    nested: bool
    fixed: tuple[str, ...] = ()
    prop: str | None = None
    raw_value: bool = False
    ref: bool = False


@dataclass
class _Page:
    rows: list[Row]
    keys: list[SortKey]
    more: bool
    count: int | None


class StaService:
    def __init__(self, db: ReadDb, *, max_entities: int = DEFAULT_MAX_ENTITIES,
                 timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> None:
        self.db = db
        self.model = build_model(db.dialect)
        self.max_entities = max_entities
        self.timeout_s = timeout_s

    # ---- entry points
    def root(self, base: str) -> dict[str, Any]:
        return {"value": [{"name": name, "url": f"{base}/{name}"} for name in SET_ORDER],
                "serverSettings": {"conformance": CONFORMANCE}}

    def get(self, path: str, pairs: list[tuple[str, str]], base: str) -> tuple[Any, str]:
        """(body, media type) for ``GET base/path?pairs``; raises `StaError`."""
        opts = parse_options(pairs)
        ctx = _Ctx(base, self.db.deadline(self.timeout_s), self.max_entities)
        target = self._resolve(parse_path(path), ctx)
        eset = target.eset
        if opts.result_format and (eset.name != "Observations" or target.single or target.ref):
            raise BadQuery("$resultFormat=dataArray is only valid for a collection of Observations",
                           field="$resultFormat")
        if not target.single:
            link_path = f"{base}/{quote(path, safe=PATH_SAFE)}"
            if target.ref:
                page = self._page(eset, target.conds, opts, ctx, nested=target.nested, fixed=target.fixed)
                body = self._envelope(page, opts, link_path)
                body["value"] = [{"@iot.selfLink": ctx.link(eset, eset.id_of(r))} for r in page.rows]
                return body, "application/json"
            if opts.result_format:
                return self._data_array(eset, target, opts, ctx, link_path), "application/json"
            body = self._collection(eset, target, opts, ctx, link_path)
            return body, "application/json"
        self._check_names(eset, opts)
        row = self._one(eset, target.conds, ctx)
        if target.ref:
            return {"@iot.selfLink": ctx.link(eset, eset.id_of(row))}, "application/json"
        if target.prop is not None:
            doc = self._entity(eset, row, QueryOptions(), ctx)
            value = doc.get(target.prop)
            if target.raw_value:
                text = value if isinstance(value, str) else json.dumps(value)
                return text, "text/plain; charset=utf-8"
            return {target.prop: value}, "application/json"
        return self._entity(eset, row, opts, ctx), "application/json"

    # ---- path resolution
    def _resolve(self, segments: list[Segment], ctx: _Ctx) -> _Target:
        first = segments[0]
        eset = self.model.get(first.name)
        if eset is None:
            raise NotFound(f"no entity set {first.name!r} (there are: {', '.join(SET_ORDER)})")
        target = _Target(eset, [], False, False)
        if first.key is not None:
            target.conds.append(self._id_cond(eset, first.key))
            target.single = True
        rest = segments[1:]
        for i, seg in enumerate(rest):
            last = i == len(rest) - 1
            if seg.name == "$ref" and last and seg.key is None and target.prop is None:
                target.ref = True
            elif seg.name == "$value" and last and target.prop is not None:
                target.raw_value = True
            elif target.prop is None and seg.name in target.eset.navs:
                if not target.single:
                    raise BadQuery(f"path: {seg.name} follows a collection; address one "
                                   f"{target.eset.singular} by its id first")
                row = self._one(target.eset, target.conds, ctx)
                nav = target.eset.navs[seg.name]
                target = _Target(self.model[nav.target], [nav.cond(row)], not nav.many, True, nav.fixes)
                if seg.key is not None:
                    if not nav.many:
                        raise BadQuery(f"path: {seg.name} is a single entity; it takes no id")
                    target.conds.append(self._id_cond(target.eset, seg.key))
                    target.single = True
            elif target.single and target.prop is None and seg.key is None and (
                    seg.name in FIELDS[target.eset.name] or seg.name in ID_NAMES):
                target.prop = "@iot.id" if seg.name in ID_NAMES else seg.name
            else:
                raise NotFound(f"path: {target.eset.singular} has no {seg.name!r} here (navigation: "
                               f"{', '.join(target.eset.navs)}; properties: "
                               f"{', '.join(FIELDS[target.eset.name])})")
        return target

    def _id_cond(self, eset: EntitySet, key: str) -> Cond:
        cond = eset.id_cond(key)
        if cond is None:
            raise NotFound(f"no {eset.singular} {key!r} (ids look like {_ID_FORMS[eset.name]})")
        return cond

    def _one(self, eset: EntitySet, conds: list[Cond], ctx: _Ctx) -> Row:
        keys = sort_keys(eset, [], nested=False)
        sql, params = select_sql(eset, conds, keys, limit=1)
        rows = self.db.fetch(sql, params, ctx.deadline)
        if not rows:
            raise NotFound(f"no such {eset.singular}")
        return rows[0]

    # ---- collections
    def _page(self, eset: EntitySet, conds: list[Cond], opts: QueryOptions, ctx: _Ctx, *,
              nested: bool, fixed: tuple[str, ...] = ()) -> _Page:
        self._check_names(eset, opts)
        keys = sort_keys(eset, opts.orderby, nested=nested, fixed=fixed)
        conds = list(conds)
        if opts.filter is not None:
            conds.append(compile_filter(eset, opts.filter))
        count = None
        if opts.count:
            sql, params = count_sql(eset, conds)
            count = int(self.db.fetch(sql, params, ctx.deadline)[0]["n"])
        offset = opts.skip
        if opts.skiptoken is not None:
            conds.append(keyset_condition(keys, decode_cursor(keys, opts.skiptoken)))
            offset = 0
        size = opts.page_size()
        sql, params = select_sql(eset, conds, keys, limit=size + 1, offset=offset)
        rows = self.db.fetch(sql, params, ctx.deadline)
        more = len(rows) > size > 0  # $top=0: the count alone
        rows = rows[:size]
        ctx.spend(len(rows), self.max_entities)
        return _Page(rows, keys, more, count)

    def _envelope(self, page: _Page, opts: QueryOptions, link_path: str) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if page.count is not None:
            body["@iot.count"] = page.count
        if page.more:
            body["@iot.nextLink"] = next_link(link_path, opts, page)
        return body

    def _collection(self, eset: EntitySet, target: _Target, opts: QueryOptions, ctx: _Ctx,
                    link_path: str) -> dict[str, Any]:
        page = self._page(eset, target.conds, opts, ctx, nested=target.nested, fixed=target.fixed)
        body = self._envelope(page, opts, link_path)
        body["value"] = [self._entity(eset, row, opts, ctx) for row in page.rows]
        return body

    def _check_names(self, eset: EntitySet, opts: QueryOptions) -> None:
        allowed = set(FIELDS[eset.name]) | set(eset.navs) | {*ID_NAMES, "@iot.selfLink"}
        for name in opts.select or ():
            if name not in allowed:
                raise BadQuery(f"$select: {eset.singular} has no property {name!r} (has: "
                               f"{', '.join(sorted(allowed))})", field="$select")
        for exp in opts.expand:
            if exp.nav not in eset.navs:
                raise BadQuery(f"$expand: {eset.singular} has no navigation property {exp.nav!r} (has: "
                               f"{', '.join(eset.navs)})", field="$expand")

    # ---- entities
    def _entity(self, eset: EntitySet, row: Row, opts: QueryOptions, ctx: _Ctx) -> dict[str, Any]:
        entity_id = eset.id_of(row)
        link = ctx.link(eset, entity_id)
        select = set(opts.select) if opts.select else None
        out: dict[str, Any] = {}
        if select is None or select & set(ID_NAMES):
            out["@iot.id"] = entity_id
        if select is None or "@iot.selfLink" in select:
            out["@iot.selfLink"] = link
        for name, value in eset.render(row).items():
            if select is None or name in select:
                out[name] = value
        expanded = {e.nav for e in opts.expand}
        for nav in eset.navs:
            if nav not in expanded and (select is None or nav in select):
                out[f"{nav}@iot.navigationLink"] = f"{link}/{nav}"
        if opts.expand:
            self._check_names(eset, opts)
        for exp in opts.expand:
            nav = eset.navs[exp.nav]
            target = self.model[nav.target]
            if nav.many:
                page = self._page(target, [nav.cond(row)], exp.options, ctx, nested=True, fixed=nav.fixes)
                if page.count is not None:
                    out[f"{exp.nav}@iot.count"] = page.count
                out[exp.nav] = [self._entity(target, r, exp.options, ctx) for r in page.rows]
                if page.more:
                    out[f"{exp.nav}@iot.nextLink"] = next_link(f"{link}/{exp.nav}", exp.options, page)
            else:
                self._check_names(target, exp.options)
                keys = sort_keys(target, [], nested=False)
                sql, params = select_sql(target, [nav.cond(row)], keys, limit=1)
                rows = self.db.fetch(sql, params, ctx.deadline)
                ctx.spend(len(rows), self.max_entities)
                out[exp.nav] = self._entity(target, rows[0], exp.options, ctx) if rows else None
        return out

    # ---- dataArray
    def _data_array(self, eset: EntitySet, target: _Target, opts: QueryOptions, ctx: _Ctx,
                    link_path: str) -> dict[str, Any]:
        if opts.expand:
            raise BadQuery("$expand cannot be combined with $resultFormat=dataArray", field="$expand")
        components = [("id" if c == "@iot.id" else c) for c in (opts.select or DATA_ARRAY_COMPONENTS)]
        for c in components:
            if c not in DATA_ARRAY_COMPONENTS:
                raise BadQuery(f"$select: {c!r} is not a dataArray component (components: "
                               f"{', '.join(DATA_ARRAY_COMPONENTS)})", field="$select")
        page = self._page(eset, target.conds, dataclasses.replace(opts, select=None), ctx,
                          nested=target.nested, fixed=target.fixed)
        groups: dict[tuple[str, str], list[list[Any]]] = {}
        for row in page.rows:
            doc = eset.render(row)
            doc["id"] = eset.id_of(row)
            groups.setdefault((row["node_id"], row["channel"]), []).append([doc.get(c) for c in components])
        streams = self.model["Datastreams"]
        body = self._envelope(page, opts, link_path)
        body["value"] = [{"Datastream@iot.navigationLink": ctx.link(streams, f"{node}:{channel}"),
                          "components": components, "dataArray@iot.count": len(items), "dataArray": items}
                         for (node, channel), items in groups.items()]
        return body


_ID_FORMS = {"Things": "'pole-1'", "Locations": "'pole-1'", "HistoricalLocations": "'pole-1'",
             "FeaturesOfInterest": "'pole-1'", "Sensors": "'pole-1:weather'",
             "ObservedProperties": "'temperature_c'", "Datastreams": "'pole-1:weather.temperature_c'",
             "Observations": "'pole-1:3:1234' (node:epoch:seq)"}


def next_link(link_path: str, opts: QueryOptions, page: _Page) -> str:
    """The same query with the cursor after the page's last row (``$skip`` applies to page one only)."""
    last = page.rows[-1]
    token = encode_cursor(page.keys, [last[f"_k{i}"] for i in range(len(page.keys))])
    params = [(k, v) for k, v in opts.raw.items() if k not in ("$skip", "$skiptoken")]
    params.append(("$skiptoken", token))
    return f"{link_path}?{urlencode(params, quote_via=quote, safe='$,()/:@')}"
