"""The v1 wire format shared by node and central (see docs/protocol.md).

A batch travels as gzip-compressed JSON in a columnar layout: readings are
grouped per channel; sequence numbers, stamp indexes and values (integers in
the channel's decimal resolution) are delta-encoded; a sampling cycle's
stamp (wall_ms, boot_ms, boot id) is stored once in a stamp table; flags are
run-length encoded; boot ids sit in a small table referenced by index. Decoding
reproduces every `Reading` exactly (values that are not exact multiples of the
resolution travel verbatim in a per-channel exception list).

Requests are signed with HMAC-SHA256 over method, path, timestamp, node id and
the body's SHA-256 (`sign_request` / `verify_signature`).

This module runs on the Pi: it imports only the standard library and node.model.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import hmac
import itertools
import json
import math
import operator
import re
import zlib
from array import array
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

from node.model import Batch, Gap, Incident, Reading, unit_of

PROTOCOL_VERSION = 1
INGEST_PATH = "/v1/ingest"
PING_PATH = "/v1/ping"
CONFIG_PATH = "/v1/config"  # the node fetches its desired configuration (docs/fleet.md)
CONTENT_TYPE = "application/vnd.streetnode.v1+json"
CONTENT_ENCODING = "gzip"
# headers every ingest body is sent with (besides the signature headers)
BODY_HEADERS = {"Content-Type": CONTENT_TYPE, "Content-Encoding": CONTENT_ENCODING}
HEADER_NODE = "X-Streetnode-Node"
HEADER_TIMESTAMP = "X-Streetnode-Timestamp"
HEADER_SIGNATURE = "X-Streetnode-Signature"
HEADER_SERVER_TIME = "X-Streetnode-Server-Time"  # on every central response, ms since the epoch
HEADER_RECEIPT = "X-Streetnode-Receipt"  # on every central response to a request whose signature verified
TIMESTAMP_WINDOW_MS = 5 * 60 * 1000
# Bodies up to this much JSON (every steady-state upload: ~1 KiB) get gzip's best level, since
# bytes on a metered link are what they cost; a backlog's large batches get level 6: 1.5 % more
# bytes for a third of the CPU (bench/drain.py), and a drain is CPU-bound on the node.
GZIP_BEST_MAX = 16 * 1024

MAX_SAFE_INT = 2**53 - 1
MAX_DECIMALS = 9
MAX_CHANNELS = 1024
MAX_BOOTS = 4096
MAX_STR = 256
MAX_DETAIL = 4096
MAX_HEALTH_KEYS = 64
GAP_REASONS = ("evicted_size", "evicted_age", "disk_full", "overflow", "rejected", "buffer_rollback",
               "buffer_lost")
# Gaps over a range the sender may never have held whole (a buffer rolled back or lost): its `count`
# may be anything >= 0; the central stores the number of seqs of the range it does not hold.
HOLE_REASONS = ("buffer_rollback", "buffer_lost")
VOLATILE_EPOCH_MIN = 1 << 40  # epochs from here up are volatile (memory-only, docs/protocol.md)
MAX_CONFLICT_SEQS = 1000  # an ingest answer lists at most this many conflicting seqs (the count is exact)

# every pattern is used with fullmatch: "$" would let a trailing newline through
_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SIG_RE = re.compile(r"[0-9a-f]{64}")
_TS_RE = re.compile(r"[0-9]{1,15}")
# the timestamp header is signed as the number's decimal form: no leading zero, so that the digits
# sent are exactly the digits signed (docs/protocol.md, Signature)
_TS_HEADER_RE = re.compile(r"0|[1-9][0-9]{0,14}")


def is_node_id(text: str) -> bool:
    """1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit."""
    return _NODE_ID_RE.fullmatch(text) is not None


class ProtocolError(ValueError):
    """A body or header that does not follow the protocol; ``field`` names where."""

    def __init__(self, field: str, message: str, *, code: str = "schema") -> None:
        self.field = field
        self.message = message
        self.code = code  # "schema", "bad_gzip", "bad_json", "too_large"
        super().__init__(f"{field}: {message}" if field else message)


# one reading as a plain tuple, in this column order (what the central stores)
ROW_FIELDS = ("seq", "channel", "value", "flags", "wall_ms", "boot_ms", "boot_id")
Row = tuple[int, str, float | None, int, int, int, str]


class IngestBatch:
    """A decoded, validated ingest body.

    Decoding keeps readings as `Row` tuples (``rows()``, sorted by seq), which is what the
    central stores; ``readings`` builds `Reading` objects from them on first use.
    """

    def __init__(self, node_id: str, epoch: int, sent_ms: int, readings: list[Reading] | None = None,
                 gaps: list[Gap] | None = None, incidents: list[Incident] | None = None,
                 health: dict[str, Any] | None = None, units: dict[str, str] | None = None,
                 batch_id: int | None = None, *, rows: list[Row] | None = None) -> None:
        self.node_id, self.epoch, self.sent_ms, self.batch_id = node_id, epoch, sent_ms, batch_id
        self.gaps = list(gaps or [])
        self.incidents = list(incidents or [])
        self.health = dict(health or {})
        self.units = dict(units or {})
        self._readings = None if readings is None and rows is not None else list(readings or [])
        self._rows = rows

    @property
    def readings(self) -> list[Reading]:
        if self._readings is None:
            self._readings = [Reading(*row) for row in self._rows or []]
        return self._readings

    def rows(self) -> list[Row]:
        if self._rows is None:
            self._rows = [(r.seq, r.channel, r.value, r.flags, r.wall_ms, r.boot_ms, r.boot_id)
                          for r in self.readings]
        return self._rows

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self.readings)

    def __repr__(self) -> str:
        return (f"IngestBatch(node_id={self.node_id!r}, epoch={self.epoch}, readings={len(self)}, "
                f"gaps={len(self.gaps)}, incidents={len(self.incidents)})")


# ---------------------------------------------------------------- encoding helpers
def _decimals(resolution: float) -> int:
    """Decimal digits of a power-of-ten resolution (0.01 -> 2); others get 6."""
    if resolution > 0:
        k = -math.log10(resolution)
        if abs(k - round(k)) < 1e-9 and 0 <= round(k) <= MAX_DECIMALS:
            return int(round(k))
    return 6


MAX_SCALED = MAX_SAFE_INT // 2  # so that every delta of two scaled values fits in MAX_SAFE_INT


def _scaled(value: float, decimals: int) -> int | None:
    """The integer n with n / 10**decimals == value exactly, or None."""
    if not math.isfinite(value) or abs(value) * 10**decimals > MAX_SCALED:
        return None
    n = round(value * 10**decimals)
    back = n / 10**decimals if decimals else float(n)
    if back != value or math.copysign(1.0, back) != math.copysign(1.0, value):
        return None
    return n


def _unscale(n: int, decimals: int) -> float:
    return n / 10**decimals if decimals else float(n)


def _deltas(values: Sequence[int]) -> list[int]:
    return [b - a for a, b in zip(itertools.chain((0,), values), values, strict=False)]


def _encode_values(values: list[float | None], decimals: int,
                   seqs: Sequence[int]) -> tuple[list[int | None], list[list[Any]]]:
    """Delta-coded scaled integers (None for no value) and the [index, exact] exceptions.

    A value that is not finite cannot travel (a `ProtocolError` naming its reading's seq): v1 values
    are finite, so every store keeps and every JSON read returns exactly what was sampled."""
    p = 10**decimals
    if None not in values:  # fast path: every value an exact multiple of the resolution
        try:
            scaled = [round(v * p) for v in values]  # type: ignore[operator]  (no None here)
            if (scaled and max(map(abs, scaled)) <= MAX_SCALED
                    and [n / p for n in scaled] == values
                    and not any(v == 0 and math.copysign(1.0, v) < 0 for v in values)):  # type: ignore
                return _deltas(scaled), []
        except (OverflowError, ValueError):  # inf or nan: the slow path handles them
            pass
    out: list[int | None] = []
    exact: list[list[Any]] = []
    prev = 0
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        n = _scaled(value, decimals)
        if n is None:
            if not math.isfinite(value):
                raise ProtocolError(f"readings[seq={seqs[i]}]", f"value {value!r} is not finite")
            out.append(None)
            exact.append([i, value])
            continue
        out.append(n - prev)
        prev = n
    return out, exact


def _rle(values: list[Any]) -> list[Any]:
    """[a, a, a, b] -> [3, a, 1, b]."""
    out: list[Any] = []
    for v in values:
        if out and out[-1] == v and type(out[-1]) is type(v):
            out[-2] += 1
        else:
            out.extend((1, v))
    return out


_SEQ = operator.attrgetter("seq")


def encode_payload(batch: Batch, *, health: Mapping[str, Any], sent_ms: int) -> dict[str, Any]:
    """The v1 JSON document for ``batch`` (before serialization and gzip)."""
    readings = batch.readings
    seqs_of = getattr(readings, "seqs", None)  # a claim's columns (node/buffer/columns.py): no readings built
    seqs_in = seqs_of() if seqs_of is not None else list(map(_SEQ, readings))
    if not all(map(operator.lt, seqs_in, itertools.islice(seqs_in, 1, None))):  # not strictly rising
        readings = sorted(readings, key=_SEQ)
        if len(set(seqs_in)) != len(readings):
            dup = next(a.seq for a, b in zip(readings, readings[1:], strict=False) if a.seq == b.seq)
            raise ProtocolError(f"readings[seq={dup}]", "duplicate sequence number in one batch")
    boots: list[str] = []
    boot_index: dict[str, int] = {}
    stamp_index: dict[tuple[int, int, str], int] = {}
    walls: list[int] = []
    offsets: list[int] = []
    stamp_boots: list[int] = []
    # channel -> (seqs, stamp indexes, values, flags)
    # (seqs and stamp indexes in arrays: no int object per reading while a batch is encoded, #22)
    columns: dict[str, tuple[MutableSequence[int], MutableSequence[int], list[float | None], list[int]]] = {}
    last_wall = last_boot_ms = -1
    last_boot_id: str | None = None
    si = -1
    for r in readings:
        # the readings of one sampling cycle come one after another: look their stamp up once
        if r.wall_ms != last_wall or r.boot_ms != last_boot_ms or r.boot_id != last_boot_id:
            last_wall, last_boot_ms, last_boot_id = r.wall_ms, r.boot_ms, r.boot_id
            key = (last_wall, last_boot_ms, last_boot_id)
            found = stamp_index.get(key)
            if found is None:
                bi = boot_index.get(r.boot_id)
                if bi is None:
                    bi = boot_index[r.boot_id] = len(boots)
                    boots.append(r.boot_id)
                found = stamp_index[key] = len(walls)
                walls.append(r.wall_ms)
                offsets.append(r.wall_ms - r.boot_ms)
                stamp_boots.append(bi)
            si = found
        col = columns.get(r.channel)
        if col is None:
            col = columns[r.channel] = (array("q"), array("q"), [], [])
        col[0].append(r.seq)
        col[1].append(si)
        col[2].append(r.value)
        col[3].append(r.flags)

    channels = []
    for name, (seqs, stamp_ids, raw_values, flags) in columns.items():
        unit, resolution = unit_of(name)
        decimals = _decimals(resolution)
        values, exact = _encode_values(raw_values, decimals, seqs)
        ch: dict[str, Any] = {"name": name, "unit": unit, "dec": decimals, "s": _deltas(seqs),
                              "t": _deltas(stamp_ids), "v": values}
        if any(flags):
            ch["f"] = _rle(flags)
        if exact:
            ch["x"] = exact
        channels.append(ch)

    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "node": batch.node_id,
        "epoch": batch.epoch,
        "batch": batch.id,
        "sent_ms": sent_ms,
        "boots": boots,
        "stamps": {"wall": _deltas(walls), "off": _deltas(offsets), "boot": _rle(stamp_boots)},
        "channels": channels,
        "gaps": [
            {"epoch": g.epoch, "first_seq": g.first_seq, "last_seq": g.last_seq, "count": g.count,
             "first_wall_ms": g.first_wall_ms, "last_wall_ms": g.last_wall_ms, "reason": g.reason}
            for g in batch.gaps
        ],
        "incidents": [
            {"id": i.id, "wall_ms": i.wall_ms, "kind": i.kind, "detail": i.detail, "count": i.count}
            for i in batch.incidents
        ],
        "health": dict(health),
    }
    return doc


def document_json(doc: Mapping[str, Any]) -> str:
    """``json.dumps(doc)`` with the wire's separators, the same text, one channel at a time.

    json's C encoder keeps every token of a document as a string of its own until it joins them:
    for a 5,000-reading batch ~1 MB of small objects at once, which a drain's memory keeps
    (docs/uploader.md, issue #22). Serialized channel by channel, that peak is one channel's."""
    parts = []
    for key, value in doc.items():
        if key == "channels":
            text = "[" + ",".join(map(_dumps, value)) + "]"
        else:
            text = _dumps(value)
        parts.append(_dumps(key) + ":" + text)
    return "{" + ",".join(parts) + "}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_batch(batch: Batch, *, health: Mapping[str, Any], sent_ms: int) -> bytes:
    """The gzip-compressed v1 body for ``batch``; send it with `BODY_HEADERS`."""
    doc = encode_payload(batch, health=health, sent_ms=sent_ms)
    text = document_json(doc).encode("utf-8")
    level = 9 if len(text) <= GZIP_BEST_MAX else 6
    return gzip.compress(text, compresslevel=level, mtime=0)


# ---------------------------------------------------------------- decoding
def gunzip_limited(raw: bytes, max_decompressed: int) -> bytes:
    """Decompress one gzip member, refusing more than ``max_decompressed`` bytes."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, max_decompressed + 1)
    except zlib.error as e:
        raise ProtocolError("body", f"not valid gzip ({e})", code="bad_gzip") from None
    if len(out) > max_decompressed:
        raise ProtocolError("body", f"decompresses to more than {max_decompressed} bytes",
                            code="too_large")
    if not d.eof:
        raise ProtocolError("body", "truncated gzip stream", code="bad_gzip")
    if d.unused_data:
        raise ProtocolError("body", "trailing data after the gzip stream", code="bad_gzip")
    return out


def _int(v: Any, path: str, lo: int = -MAX_SAFE_INT, hi: int = MAX_SAFE_INT) -> int:
    if type(v) is not int:
        raise ProtocolError(path, f"expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ProtocolError(path, f"expected an integer in [{lo}, {hi}], got {v}")
    return v


def _opt_int(v: Any, path: str, lo: int = -MAX_SAFE_INT) -> int | None:
    return None if v is None else _int(v, path, lo)


# what no string of a document may hold: NUL (PostgreSQL's text refuses it, SQLite would keep it) and
# UTF-16 surrogates (a JSON "\ud800" escape decodes to one; it is not valid UTF-8, so no store takes it)
_BAD_CHAR_RE = re.compile("[\x00\ud800-\udfff]")


def text_problem(v: str, max_len: int = MAX_STR) -> str | None:
    """Why ``v`` cannot be a string of the protocol (None when it can): over ``max_len`` code points,
    a NUL or a lone surrogate. The same rule on every store, so a string means one thing on each."""
    if len(v) > max_len:
        return f"longer than {max_len} characters"
    bad = _BAD_CHAR_RE.search(v)
    if bad is not None:
        what = "NUL" if bad.group() == "\x00" else "a lone surrogate"
        return f"contains {what} (U+{ord(bad.group()):04X}) at character {bad.start()}"
    return None


def _str(v: Any, path: str, max_len: int = MAX_STR, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(v, str):
        raise ProtocolError(path, f"expected a string, got {type(v).__name__}")
    problem = text_problem(v, max_len)
    if problem is not None:
        raise ProtocolError(path, problem)
    if pattern is not None and not pattern.fullmatch(v):
        raise ProtocolError(path, f"does not match {pattern.pattern}")
    return v


def _list(v: Any, path: str) -> list[Any]:
    if not isinstance(v, list):
        raise ProtocolError(path, f"expected an array, got {type(v).__name__}")
    return v


def _obj(v: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ProtocolError(path, f"expected an object, got {type(v).__name__}")
    for k in required:
        if k not in v:
            raise ProtocolError(f"{path}.{k}" if path else k, "required")
    allowed = set(required) | set(optional)
    for k in v:
        if k not in allowed:
            raise ProtocolError(f"{path}.{k}" if path else k, "unknown key")
    return v


def _all_int(values: list[Any]) -> bool:
    """Every item an int (not a bool, float or None); C loops, not a generator."""
    return not values or set(map(type, values)) == _INT_ONLY


_INT_ONLY = {int}


def _undelta(deltas: list[Any], path: str, lo: int = -MAX_SAFE_INT) -> list[int]:
    if not _all_int(deltas):
        for i, d in enumerate(deltas):
            _int(d, f"{path}[{i}]")
    out = list(itertools.accumulate(deltas))
    if out and (min(out) < lo or max(out) > MAX_SAFE_INT):
        i = next(i for i, v in enumerate(out) if not lo <= v <= MAX_SAFE_INT)
        raise ProtocolError(f"{path}[{i}]", f"running value {out[i]} out of range [{lo}, {MAX_SAFE_INT}]")
    return out


def _unrle(runs: list[Any], path: str, total: int, item: Any) -> list[Any]:
    if len(runs) % 2:
        raise ProtocolError(path, "expected [count, value, count, value, ...]")
    out: list[Any] = []
    for i in range(0, len(runs), 2):
        n = _int(runs[i], f"{path}[{i}]", 1, total)
        v = item(runs[i + 1], f"{path}[{i + 1}]")
        if len(out) + n > total:
            raise ProtocolError(path, f"runs cover more than {total} items")
        out.extend([v] * n)
    if len(out) != total:
        raise ProtocolError(path, f"runs cover {len(out)} items, expected {total}")
    return out


def _float(v: Any, path: str) -> float:
    if type(v) is int and abs(v) <= MAX_SAFE_INT:
        return float(v)
    if type(v) is float and math.isfinite(v):
        return v
    if v in ("nan", "inf", "-inf"):  # what encoders before v1's finite rule wrote
        raise ProtocolError(path, f"{v}: values must be finite (send null with the FAULT flag)")
    raise ProtocolError(path, "expected a finite number")


def _decode_stamps(doc: dict[str, Any], boot_ids: list[str]) -> list[tuple[int, int, str]]:
    st = _obj(doc["stamps"], "stamps", ("wall", "off", "boot"))
    walls = _undelta(_list(st["wall"], "stamps.wall"), "stamps.wall", lo=0)
    offs = _undelta(_list(st["off"], "stamps.off"), "stamps.off")
    if len(offs) != len(walls):
        raise ProtocolError("stamps.off", f"has {len(offs)} items, expected {len(walls)}")
    boots = _unrle(_list(st["boot"], "stamps.boot"), "stamps.boot", len(walls),
                   lambda v, p: _int(v, p, 0, len(boot_ids) - 1))
    stamps = []
    for i, (w, o, b) in enumerate(zip(walls, offs, boots, strict=True)):
        boot_ms = w - o
        if not 0 <= boot_ms <= MAX_SAFE_INT:
            raise ProtocolError(f"stamps.off[{i}]", f"gives boot_ms {boot_ms} out of range")
        stamps.append((w, boot_ms, boot_ids[b]))
    return stamps


def _decode_channel(ch: Any, path: str, stamps: list[tuple[int, int, str]],
                    out: list[Row]) -> tuple[str, str]:
    ch = _obj(ch, path, ("name", "dec", "s", "t", "v"), ("unit", "f", "x"))
    name = _str(ch["name"], f"{path}.name")
    if not name:
        raise ProtocolError(f"{path}.name", "empty channel name")
    unit = _str(ch.get("unit", ""), f"{path}.unit", 32)
    dec = _int(ch["dec"], f"{path}.dec", 0, MAX_DECIMALS)
    seqs = _undelta(_list(ch["s"], f"{path}.s"), f"{path}.s", lo=0)
    n = len(seqs)
    tis = _undelta(_list(ch["t"], f"{path}.t"), f"{path}.t", lo=0)
    vals = _list(ch["v"], f"{path}.v")
    for key, col in (("t", tis), ("v", vals)):
        if len(col) != n:
            raise ProtocolError(f"{path}.{key}", f"has {len(col)} items, expected {n} (as {path}.s)")
    flags = (_unrle(_list(ch["f"], f"{path}.f"), f"{path}.f", n, lambda v, p: _int(v, p, 0, 2**31 - 1))
             if "f" in ch else [0] * n)
    exact: dict[int, float] = {}
    for j, item in enumerate(_list(ch.get("x", []), f"{path}.x")):
        item = _list(item, f"{path}.x[{j}]")
        if len(item) != 2:
            raise ProtocolError(f"{path}.x[{j}]", "expected [index, value]")
        idx = _int(item[0], f"{path}.x[{j}][0]", 0, n - 1)
        if vals[idx] is not None:
            raise ProtocolError(f"{path}.x[{j}][0]", f"{path}.v[{idx}] must be null")
        exact[idx] = _float(item[1], f"{path}.x[{j}][1]")
    if tis and max(tis) >= len(stamps):  # (each index is >= 0: checked by _undelta)
        i = next(i for i, t in enumerate(tis) if t >= len(stamps))
        raise ProtocolError(f"{path}.t[{i}]", f"stamp index {tis[i]} but only {len(stamps)} stamps")
    values = _decode_values(vals, dec, exact, f"{path}.v")
    out += [(seq, name, value, flag, wall, boot_ms, boot_id)
            for seq, value, flag, (wall, boot_ms, boot_id)
            in zip(seqs, values, flags, map(stamps.__getitem__, tis), strict=True)]
    return name, unit


def _decode_values(vals: list[Any], dec: int, exact: dict[int, float], path: str) -> list[float | None]:
    if not exact and _all_int(vals):  # the common case: no gaps, no exceptions
        acc = _undelta(vals, path)
        if dec == 0:
            return [float(a) for a in acc]
        p = 10**dec
        return [a / p for a in acc]
    out: list[float | None] = []
    total = 0
    for i, d in enumerate(vals):
        if d is None:
            out.append(exact.get(i))
            continue
        total += _int(d, f"{path}[{i}]")
        if abs(total) > MAX_SAFE_INT:
            raise ProtocolError(f"{path}[{i}]", "running value out of range")
        out.append(_unscale(total, dec))
    return out


def _decode_gap(g: Any, path: str) -> Gap:
    g = _obj(g, path, ("epoch", "first_seq", "last_seq", "count", "reason"),
             ("first_wall_ms", "last_wall_ms"))
    first, last = _int(g["first_seq"], f"{path}.first_seq", 0), _int(g["last_seq"], f"{path}.last_seq", 0)
    if last < first:
        raise ProtocolError(f"{path}.last_seq", "smaller than first_seq")
    return Gap(epoch=_int(g["epoch"], f"{path}.epoch", 0), first_seq=first, last_seq=last,
               count=_int(g["count"], f"{path}.count", 0),
               first_wall_ms=_opt_int(g.get("first_wall_ms"), f"{path}.first_wall_ms"),
               last_wall_ms=_opt_int(g.get("last_wall_ms"), f"{path}.last_wall_ms"),
               reason=_str(g["reason"], f"{path}.reason", 64))


def _decode_incident(i: Any, path: str) -> Incident:
    i = _obj(i, path, ("id", "wall_ms", "kind", "detail"), ("count",))
    return Incident(id=_int(i["id"], f"{path}.id", 0), wall_ms=_int(i["wall_ms"], f"{path}.wall_ms"),
                    kind=_str(i["kind"], f"{path}.kind", 64),
                    detail=_str(i["detail"], f"{path}.detail", MAX_DETAIL),
                    count=_opt_int(i.get("count"), f"{path}.count", 0))


def _decode_health(h: Any) -> dict[str, Any]:
    if not isinstance(h, dict):
        raise ProtocolError("health", f"expected an object, got {type(h).__name__}")
    if len(h) > MAX_HEALTH_KEYS:
        raise ProtocolError("health", f"more than {MAX_HEALTH_KEYS} keys")
    for k, v in h.items():
        _str(k, "health", 64)
        if v is not None and not isinstance(v, str | int | float | bool):
            raise ProtocolError(f"health.{k}", "expected a string, number, boolean or null")
        if isinstance(v, str):
            _str(v, f"health.{k}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ProtocolError(f"health.{k}", "expected a finite number")
    for k in ("backlog_readings", "oldest_reading_age_s"):
        if h.get(k) is not None and (isinstance(h[k], bool) or not isinstance(h[k], int | float)):
            raise ProtocolError(f"health.{k}", "expected a number or null")
    if h.get("firmware") is not None and not isinstance(h["firmware"], str):
        raise ProtocolError("health.firmware", "expected a string")
    return dict(h)


def decode_document(doc: Any) -> IngestBatch:
    """Validate a parsed v1 document and rebuild its readings."""
    doc = _obj(doc, "", ("v", "node", "epoch", "sent_ms", "boots", "stamps", "channels"),
               ("batch", "gaps", "incidents", "health"))
    if doc["v"] != PROTOCOL_VERSION or type(doc["v"]) is not int:
        raise ProtocolError("v", f"unsupported protocol version {doc['v']!r}, expected {PROTOCOL_VERSION}")
    node_id = _str(doc["node"], "node", 64, _NODE_ID_RE)
    epoch = _int(doc["epoch"], "epoch", 0)
    sent_ms = _int(doc["sent_ms"], "sent_ms", 0)
    batch_id = _opt_int(doc.get("batch"), "batch")
    boots = [_str(b, f"boots[{i}]", 64) for i, b in enumerate(_list(doc["boots"], "boots"))]
    if len(boots) > MAX_BOOTS:
        raise ProtocolError("boots", f"more than {MAX_BOOTS} boot ids")
    stamps = _decode_stamps(doc, boots)
    channels = _list(doc["channels"], "channels")
    if len(channels) > MAX_CHANNELS:
        raise ProtocolError("channels", f"more than {MAX_CHANNELS} channels")
    rows: list[Row] = []
    units: dict[str, str] = {}
    for i, ch in enumerate(channels):
        name, unit = _decode_channel(ch, f"channels[{i}]", stamps, rows)
        if name in units:
            raise ProtocolError(f"channels[{i}].name", f"channel {name!r} appears twice")
        units[name] = unit
    rows.sort(key=operator.itemgetter(0))
    if len(set(map(operator.itemgetter(0), rows))) != len(rows):
        dup = next(a[0] for a, b in zip(rows, rows[1:], strict=False) if a[0] == b[0])
        raise ProtocolError("channels", f"sequence number {dup} appears twice")
    gaps = [_decode_gap(g, f"gaps[{i}]") for i, g in enumerate(_list(doc.get("gaps", []), "gaps"))]
    incidents = [_decode_incident(x, f"incidents[{i}]")
                 for i, x in enumerate(_list(doc.get("incidents", []), "incidents"))]
    return IngestBatch(node_id=node_id, epoch=epoch, sent_ms=sent_ms, rows=rows, gaps=gaps,
                       incidents=incidents, health=_decode_health(doc.get("health", {})), units=units,
                       batch_id=batch_id)


def decode_body(raw: bytes, *, max_decompressed: int) -> IngestBatch:
    """Gunzip (bounded), parse and validate an ingest body; raises `ProtocolError`."""
    text = gunzip_limited(raw, max_decompressed)
    try:
        doc = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("body", f"not valid UTF-8 JSON ({e})", code="bad_json") from None
    return decode_document(doc)


def _reject_constant(name: str) -> float:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


# ---------------------------------------------------------------- signing
def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def string_to_sign(method: str, path: str, timestamp: int, node_id: str, body: bytes) -> bytes:
    """What the signature covers: version, method, path, timestamp, node id, SHA-256 of the body."""
    return f"streetnode-v1\n{method.upper()}\n{path}\n{timestamp}\n{node_id}\n{body_digest(body)}".encode()


def signature(key: bytes, method: str, path: str, body: bytes, timestamp: int, *, node_id: str) -> str:
    return hmac.new(key, string_to_sign(method, path, timestamp, node_id, body), hashlib.sha256).hexdigest()


def sign_request(key: bytes, method: str, path: str, body: bytes, timestamp: int, *,
                 node_id: str) -> dict[str, str]:
    """Authentication headers for one request; ``timestamp`` is the node's wall time in ms."""
    return {
        HEADER_NODE: node_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: signature(key, method, path, body, int(timestamp), node_id=node_id),
    }


def verify_signature(key: bytes, method: str, path: str, body: bytes, timestamp: int, sig: str, *,
                     node_id: str) -> bool:
    """True when ``sig`` is the signature of this request (constant-time comparison)."""
    return hmac.compare_digest(signature(key, method, path, body, timestamp, node_id=node_id), sig)


def _receipt_message(request_signature: str, body: bytes) -> bytes:
    return f"streetnode-v1-receipt\n{request_signature}\n{body_digest(body)}".encode()


def sign_receipt(key: bytes, request_signature: str, body: bytes) -> str:
    """The central's receipt for its answer ``body`` (bytes as sent) to the request signed
    ``request_signature``: hex HMAC-SHA256 over "streetnode-v1-receipt", the request's signature and
    the SHA-256 of the response body. A node believes an answer only with a valid receipt."""
    return hmac.new(key, _receipt_message(request_signature, body), hashlib.sha256).hexdigest()


def verify_receipt(key: bytes, request_signature: str, body: bytes, receipt: str | None) -> bool:
    """True when ``receipt`` (the response's `HEADER_RECEIPT`, None if absent) is the central's
    receipt for ``body`` answering the request signed ``request_signature`` (constant-time)."""
    if not receipt or not _SIG_RE.fullmatch(receipt.strip()):
        return False
    return hmac.compare_digest(sign_receipt(key, request_signature, body), receipt.strip())


@dataclass(frozen=True)
class AuthHeaders:
    node_id: str
    timestamp: int
    signature: str


def parse_auth_headers(headers: Mapping[str, str]) -> AuthHeaders:
    """The three authentication headers, validated; raises `ProtocolError` naming the header."""
    lower = {k.lower(): v for k, v in headers.items()}
    values = []
    for name in (HEADER_NODE, HEADER_TIMESTAMP, HEADER_SIGNATURE):
        v = lower.get(name.lower())
        if v is None:
            raise ProtocolError(name, "missing header", code="bad_signature")
        values.append(v.strip())
    node_id, ts, sig = values
    if not _NODE_ID_RE.fullmatch(node_id):
        raise ProtocolError(HEADER_NODE, "expected a node id", code="bad_signature")
    if not _TS_HEADER_RE.fullmatch(ts):
        raise ProtocolError(HEADER_TIMESTAMP, "expected milliseconds since the epoch (1-15 ASCII digits, "
                            "no leading zero)", code="bad_signature")
    if not _SIG_RE.fullmatch(sig):
        raise ProtocolError(HEADER_SIGNATURE, "expected 64 lowercase hex digits", code="bad_signature")
    return AuthHeaders(node_id, int(ts), sig)


def timestamp_fresh(timestamp: int, now_ms: int, window_ms: int = TIMESTAMP_WINDOW_MS) -> bool:
    return abs(now_ms - timestamp) <= window_ms


# ---------------------------------------------------------------- keys and server time
def parse_key(text: str) -> bytes:
    """The HMAC key from its text form (64 hex digits, as `streetnode-central node add` prints)."""
    t = text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", t):
        raise ValueError("expected 64 hex digits (the key printed by 'streetnode-central node add')")
    return bytes.fromhex(t)


def format_key(key: bytes) -> str:
    return key.hex()


def server_time_ms(headers: Mapping[str, str], payload: Any = None) -> int | None:
    """The central's wall time from a response: JSON ``server_time_ms``, our header, or ``Date``.

    Use ``server_time_ms(...) - local_ms`` (ideally at the round trip's midpoint) as the clock offset.
    """
    if isinstance(payload, dict) and type(payload.get("server_time_ms")) is int:
        return payload["server_time_ms"]
    lower = {k.lower(): v for k, v in headers.items()}
    v = lower.get(HEADER_SERVER_TIME.lower(), "").strip()
    if _TS_RE.fullmatch(v):
        return int(v)
    date = lower.get("date")
    if date:
        try:
            return int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
        except (TypeError, ValueError):
            return None
    return None


# ---------------------------------------------------------------- the ingest answer's receipt fields
@dataclass(frozen=True)
class IngestAnswer:
    """What a node learns from a `200` ingest answer about its numbering (docs/protocol.md,
    "Responses"). A central older than these fields answers none: ``high_seq``/``max_epoch`` None,
    no conflicts."""

    stored: int
    duplicates: int
    conflicts: int  # readings of the batch whose (epoch, seq) the central holds with other content
    conflict_seqs: tuple[int, ...]  # ascending, at most MAX_CONFLICT_SEQS of them
    high_seq: int | None  # the central's highest stored seq of the batch's epoch (None: none)
    max_epoch: int | None  # the highest non-volatile epoch the central holds for the node


def _answer_int(doc: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = doc.get(key, default)
    if value is None or (type(value) is int and value >= 0):
        return value
    raise ProtocolError(key, f"expected a non-negative integer or null, got {value!r:.40}")


def parse_ingest_answer(doc: Any) -> IngestAnswer:
    """The receipt fields of a `200` ingest answer's JSON; raises `ProtocolError` naming a field
    of the wrong type (an answer is evidence to check, not a verdict to obey)."""
    if not isinstance(doc, Mapping):
        raise ProtocolError("body", "expected a JSON object")
    seqs = doc.get("conflict_seqs", [])
    if not isinstance(seqs, list) or not all(type(s) is int and s >= 0 for s in seqs):
        raise ProtocolError("conflict_seqs", "expected a list of non-negative integers")
    conflicts = _answer_int(doc, "conflicts", 0) or 0
    if len(seqs) > min(conflicts, MAX_CONFLICT_SEQS):
        raise ProtocolError("conflict_seqs", f"{len(seqs)} seqs for {conflicts} conflicts")
    return IngestAnswer(stored=_answer_int(doc, "stored", 0) or 0,
                        duplicates=_answer_int(doc, "duplicates", 0) or 0, conflicts=conflicts,
                        conflict_seqs=tuple(sorted(seqs)), high_seq=_answer_int(doc, "high_seq", None),
                        max_epoch=_answer_int(doc, "max_epoch", None))
