"""SQL for one collection read: ``$filter`` → WHERE, ``$orderby`` → ORDER BY (the entity's id
always appended as the tie-breaker), and the keyset cursor behind ``@iot.nextLink``.

The cursor (``$skiptoken``) holds the sort values of the last row sent, so the next page starts
strictly after it: rows stored meanwhile never shift a page (no repeats, no skips), unlike an offset.
Nulls sort first ascending and last descending on both databases.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from central.sta.errors import BadQuery
from central.sta.filter import FLIP, Compare, Literal, Logical, Node, Not, Prop, parse_datetime_ms
from central.sta.model import Cond, EntitySet
from central.sta.model import Prop as ModelProp
from central.sta.options import OrderKey

SQL_OP = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True)
class SortKey:
    expr: str
    descending: bool
    nullable: bool

    def sql(self) -> str:
        if not self.nullable:
            return f"{self.expr} {'DESC' if self.descending else 'ASC'}"
        return f"{self.expr} {'DESC NULLS LAST' if self.descending else 'ASC NULLS FIRST'}"


# ---------------------------------------------------------------- $filter
def _prop(eset: EntitySet, node: Prop) -> ModelProp:
    prop = eset.prop(node.path)
    if prop is None:
        known = ", ".join(sorted(eset.props))
        raise BadQuery(f"$filter: {eset.singular} has no filterable property {node.path!r} "
                       f"(at position {node.position}; filterable: {known})", field="$filter")
    return prop


def _literal_param(prop: ModelProp, path: str, lit: Literal) -> Any:
    if prop.kind == "time":
        if lit.kind == "datetime":
            return lit.value
        if lit.kind == "string":
            try:
                return parse_datetime_ms(lit.value)
            except ValueError:
                pass
        raise BadQuery(f"$filter: {path} is a time; compare it with a date-time such as "
                       f"2026-11-25T10:00:00Z, not {lit.text[:40]}", field="$filter")
    if prop.kind == "number":
        if lit.kind == "number":
            return lit.value
        raise BadQuery(f"$filter: {path} is a number; compare it with a number, not {lit.text[:40]}",
                       field="$filter")
    if lit.kind != "string":
        raise BadQuery(f"$filter: {path} is text; compare it with a quoted string such as 'abc', "
                       f"not {lit.text[:40]}", field="$filter")
    return lit.value


def _compare(eset: EntitySet, node: Compare) -> Cond:
    op, left, right = node.op, node.left, node.right
    if isinstance(left, Literal):
        op, left, right = FLIP[op], right, left
    assert isinstance(left, Prop)
    prop = _prop(eset, left)
    if isinstance(right, Prop):
        other = _prop(eset, right)
        if "id" in (prop.kind, other.kind) or prop.kind != other.kind:
            raise BadQuery(f"$filter: cannot compare {left.path} with {right.path} (at position "
                           f"{node.position})", field="$filter")
        return f"({prop.sql} {SQL_OP[op]} {other.sql})", []
    if right.kind == "null":
        if op not in ("eq", "ne") or prop.kind == "id":
            raise BadQuery(f"$filter: null can only be compared with eq or ne (at position {node.position})",
                           field="$filter")
        return f"({prop.sql} IS {'' if op == 'eq' else 'NOT '}NULL)", []
    if prop.kind == "id":
        if op not in ("eq", "ne"):
            raise BadQuery(f"$filter: {left.path} can only be compared with eq or ne", field="$filter")
        if right.kind not in ("string", "number"):
            raise BadQuery(f"$filter: {left.path} is an id; compare it with a quoted string", field="$filter")
        assert prop.id_cond is not None
        found = prop.id_cond(str(right.value))
        sql, params = found if found is not None else ("1 = 0", [])
        return (sql, params) if op == "eq" else (f"NOT {sql}", params)
    param = _literal_param(prop, left.path, right)
    if prop.nullable and op == "ne":  # OData: null ne 5 is true
        return f"({prop.sql} IS NULL OR {prop.sql} <> ?)", [param]
    if prop.nullable:  # never NULL (unknown), so that 'not' inverts exactly
        return f"({prop.sql} IS NOT NULL AND {prop.sql} {SQL_OP[op]} ?)", [param]
    return f"{prop.sql} {SQL_OP[op]} ?", [param]


def compile_filter(eset: EntitySet, node: Node) -> Cond:
    """WHERE text and parameters for a parsed ``$filter``."""
    if isinstance(node, Compare):
        return _compare(eset, node)
    if isinstance(node, Not):
        sql, params = compile_filter(eset, node.item)
        return f"(NOT {sql})", params
    assert isinstance(node, Logical)
    parts = [compile_filter(eset, item) for item in node.items]
    joiner = " AND " if node.op == "and" else " OR "
    return "(" + joiner.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]


# ---------------------------------------------------------------- $orderby + cursor
def sort_keys(eset: EntitySet, orderby: list[OrderKey], *, nested: bool,
              fixed: tuple[str, ...] = ()) -> list[SortKey]:
    """The ORDER BY keys: the requested ones, then the id in the first key's direction.

    Columns in ``fixed`` are pinned by an equality (e.g. a Datastream's node) and left out of the
    tie-breaker, so the keyset comparison runs along the index: (wall_ms, epoch, seq).
    """
    spec = [(k.path, k.descending) for k in orderby]
    if not spec:
        spec = list(eset.nested_default_order if nested and eset.nested_default_order else eset.default_order)
    keys: list[SortKey] = []
    for path, desc in spec:
        prop = eset.prop(path)
        if prop is None:
            raise BadQuery(f"$orderby: {eset.singular} has no sortable property {path!r} "
                           f"(sortable: {', '.join(sorted(eset.props))})", field="$orderby")
        keys += [SortKey(expr, desc, prop.nullable) for expr in prop.order_exprs() if expr not in fixed]
    id_prop = eset.prop("@iot.id")
    assert id_prop is not None
    seen = {k.expr for k in keys} | set(fixed)
    direction = keys[0].descending if keys else spec[0][1]
    keys += [SortKey(expr, direction, False) for expr in id_prop.order_exprs() if expr not in seen]
    return keys


def _fingerprint(keys: list[SortKey]) -> str:
    text = "|".join(f"{k.expr}:{int(k.descending)}" for k in keys)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def encode_cursor(keys: list[SortKey], values: list[Any]) -> str:
    doc = json.dumps({"o": _fingerprint(keys), "k": values}, separators=(",", ":"))
    return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")


def decode_cursor(keys: list[SortKey], token: str) -> list[Any]:
    bad = BadQuery("$skiptoken: not a token this server made for this query; follow @iot.nextLink "
                   "as given", field="$skiptoken")
    if len(token) > 4096:
        raise bad
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(doc, dict) or doc.get("o") != _fingerprint(keys):
        raise bad
    values = doc.get("k")
    if not isinstance(values, list) or len(values) != len(keys) or not all(
            v is None or isinstance(v, str | int | float) for v in values):
        raise bad
    return values


def _after(key: SortKey, value: Any) -> Cond:
    if value is None:  # nulls are first ascending, last descending
        return (f"{key.expr} IS NOT NULL", []) if not key.descending else ("1 = 0", [])
    if key.descending:
        return (f"({key.expr} < ? OR {key.expr} IS NULL)", [value]) if key.nullable else (f"{key.expr} < ?",
                                                                                         [value])
    return f"{key.expr} > ?", [value]


def keyset_condition(keys: list[SortKey], values: list[Any]) -> Cond:
    """Rows strictly after ``values`` in the order of ``keys``."""
    uniform = len({k.descending for k in keys}) == 1
    if uniform and not any(k.nullable for k in keys) and None not in values:
        op = "<" if keys[0].descending else ">"
        return (f"({', '.join(k.expr for k in keys)}) {op} ({', '.join('?' * len(keys))})", list(values))
    sql, params = _after(keys[-1], values[-1])
    for key, value in zip(reversed(keys[:-1]), reversed(values[:-1]), strict=True):
        strict_sql, strict_params = _after(key, value)
        equal_sql, equal_params = (f"{key.expr} IS NULL", []) if value is None else (f"{key.expr} = ?",
                                                                                    [value])
        sql = f"({strict_sql} OR ({equal_sql} AND {sql}))"
        params = strict_params + equal_params + params
    return sql, params


# ---------------------------------------------------------------- statements
def _where(eset: EntitySet, conds: list[Cond]) -> Cond:
    parts = ([eset.where] if eset.where else []) + [c[0] for c in conds]
    params = [p for c in conds for p in c[1]]
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def select_sql(eset: EntitySet, conds: list[Cond], keys: list[SortKey], *, limit: int,
               offset: int = 0) -> Cond:
    """SELECT of the entity's columns plus the sort values (as _k0, _k1, ...)."""
    columns = [f"{expr} AS {alias}" for alias, expr in eset.columns]
    columns += [f"{k.expr} AS _k{i}" for i, k in enumerate(keys)]
    where, params = _where(eset, conds)
    sql = (f"SELECT {', '.join(columns)} FROM {eset.source}{where} ORDER BY "
           f"{', '.join(k.sql() for k in keys)} LIMIT ? OFFSET ?")
    return sql, params + [limit, offset]


def count_sql(eset: EntitySet, conds: list[Cond]) -> Cond:
    where, params = _where(eset, conds)
    return f"SELECT COUNT(*) AS n FROM {eset.source}{where}", params
