"""A small parser for the OData ``$filter`` subset STA clients use.

Grammar (keywords are case-sensitive, as in OData)::

    expr     := or_expr
    or_expr  := and_expr ("or" and_expr)*
    and_expr := unary ("and" unary)*
    unary    := "not" unary | compare
    compare  := operand (("eq"|"ne"|"gt"|"ge"|"lt"|"le") operand)?
    operand  := "(" expr ")" | literal | path

Literals: 'string' (a quote doubled inside), numbers (``-1``, ``2.5``, ``1e3``), date-times
(``2026-11-25T10:00:00Z``, ``2026-11-25T10:00:00.123+07:00``, a date ``2026-11-25`` = its midnight
UTC), ``true``, ``false``, ``null``. Paths: ``result``, ``phenomenonTime``, ``@iot.id``,
``Datastream/@iot.id``, ``properties/ward``. Every error names the position in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.sta.errors import BadQuery

MAX_FILTER_CHARS = 4096
MAX_DEPTH = 32
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
ARITHMETIC = ("add", "sub", "mul", "div", "mod")
FLIP = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}

_DATETIME = (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})")
_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    rf"|(?P<datetime>{_DATETIME})"
    r"|(?P<date>\d{4}-\d{2}-\d{2}(?![\dT:]))"
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<name>[A-Za-z_@$][A-Za-z0-9_.@$]*(?:/[A-Za-z_@$][A-Za-z0-9_.@$]*)*)"
    r"|(?P<punct>[(),])"
)


@dataclass(frozen=True)
class Literal:
    kind: str  # "string", "number", "datetime", "bool", "null"
    value: Any  # str, float/int, epoch ms (int), bool, None
    text: str


@dataclass(frozen=True)
class Prop:
    path: str
    position: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Literal | Prop
    right: Literal | Prop
    position: int


@dataclass(frozen=True)
class Logical:
    op: str  # "and", "or"
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


Node = Compare | Logical | Not


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def parse_datetime_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 date-time (or date: midnight UTC)."""
    if len(text) == 10:
        text += "T00:00:00Z"
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000) if dt.microsecond % 1000 == 0 else round(dt.timestamp() * 1000)


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise BadQuery(f"$filter: unexpected character {text[pos]!r} at position {pos}", field="$filter")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def error(self, message: str, tok: _Tok | None = None) -> BadQuery:
        where = f"at position {tok.pos}" if tok is not None else "at the end"
        return BadQuery(f"$filter: {message} {where}", field="$filter")

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok | None:
        tok = self.peek()
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "name" and tok.text in words

    def parse(self) -> Node:
        node = self.expr()
        tok = self.peek()
        if tok is not None:
            raise self.error(f"unexpected {tok.text!r}; expected 'and', 'or' or the end", tok)
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels", self.peek())
        items = [self.and_expr()]
        while self.at_word("or"):
            self.take()
            items.append(self.and_expr())
        self.depth -= 1
        return items[0] if len(items) == 1 else Logical("or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.at_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else Logical("and", tuple(items))

    def unary(self) -> Node:
        if self.at_word("not"):
            self.take()
            return Not(self.unary())
        return self.compare()

    def compare(self) -> Node:
        start = self.peek()
        left = self.operand()
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.text in COMPARISONS:
            self.take()
            right = self.operand()
            if isinstance(left, Compare | Logical | Not) or isinstance(right, Compare | Logical | Not):
                raise self.error("a comparison needs a property or value on each side", tok)
            if isinstance(left, Literal) and isinstance(right, Literal):
                raise self.error("a comparison needs a property on one side", tok)
            return Compare(tok.text, left, right, tok.pos)
        if isinstance(left, Compare | Logical | Not):
            return left
        if tok is not None and tok.kind == "name" and tok.text in ARITHMETIC:
            raise self.error(f"arithmetic operator {tok.text!r} is not supported", tok)
        what = "after " + repr(start.text) if start is not None else ""
        raise self.error(f"expected a comparison operator ({', '.join(COMPARISONS)}) {what}".rstrip(),
                         tok)

    def operand(self) -> Literal | Prop | Node:
        tok = self.take()
        if tok is None:
            raise self.error("expected a property, a value or '('")
        if tok.kind == "punct" and tok.text == "(":
            inner = self.expr()
            close = self.take()
            if close is None or close.text != ")":
                raise self.error("expected ')'", close)
            return inner
        if tok.kind == "string":
            return Literal("string", tok.text[1:-1].replace("''", "'"), tok.text)
        if tok.kind == "number":
            num = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return Literal("number", num, tok.text)
        if tok.kind in ("datetime", "date"):
            try:
                return Literal("datetime", parse_datetime_ms(tok.text), tok.text)
            except ValueError:
                raise self.error(f"invalid date-time {tok.text!r}", tok) from None
        if tok.kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                raise self.error(f"function {tok.text!r} is not supported (only comparisons with "
                                 "eq, ne, gt, ge, lt, le joined by and, or, not)", tok)
            if tok.text in ("true", "false"):
                return Literal("bool", tok.text == "true", tok.text)
            if tok.text == "null":
                return Literal("null", None, tok.text)
            if tok.text in COMPARISONS or tok.text in ("and", "or", "not"):
                raise self.error(f"expected a property or value, got the operator {tok.text!r}", tok)
            return Prop(tok.text, tok.pos)
        raise self.error(f"unexpected {tok.text!r}", tok)


def parse_filter(text: str) -> Node:
    """The syntax tree of a ``$filter`` value; raises `BadQuery` naming the position."""
    if len(text) > MAX_FILTER_CHARS:
        raise BadQuery(f"$filter: longer than {MAX_FILTER_CHARS} characters", field="$filter")
    if not text.strip():
        raise BadQuery("$filter: empty expression", field="$filter")
    return _Parser(text).parse()
