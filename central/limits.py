"""Limits of the receiver (kept apart so the CLI can show them without the web stack).

Every bound the receiver enforces is a field of `IngestLimits`; `serve --config FILE` sets them in
a ``[limits]`` table (`parse_limits`), `serve --help` lists them (`describe_limits`) and
docs/protocol.md ("Limits") says what each one answers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from node.errors import ConfigError
from node.protocol import TIMESTAMP_WINDOW_MS

# A 20,000-reading batch with every value an exception, 200 incidents of 4 KiB and 4,096 boots is
# under 3 MiB of JSON; a node's default batch is 5,000 readings in ~5-60 KiB of gzip. Batches are
# stored one at a time, so max_readings is also how long another node's upload may wait behind one
# (10,000: ~0.1-0.3 s; a node configured for larger batches is told 413 and splits).
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # compressed bytes on the wire
DEFAULT_MAX_DECOMPRESSED = 8 * 1024 * 1024  # after gzip: the gzip-bomb bound
MAX_PING_BODY = 4096

# what each field means, in `serve --help` and docs/protocol.md order
LIMIT_HELP = {
    "max_body": "largest compressed request body (413 too_large)",
    "max_decompressed": "largest ingest body after gzip (413 too_large)",
    "max_readings": "readings in one batch (413 too_large, field readings)",
    "max_gaps": "gaps in one batch (413 too_large, field gaps)",
    "max_incidents": "incidents in one batch (413 too_large, field incidents)",
    "max_connections": "open connections; past it the oldest idle one is closed, else 503",
    "max_requests": "requests in progress at once (503 overloaded)",
    "ingest_slots": "ingest bodies decoded and stored at once (the rest wait)",
    "ingest_wait_s": "longest wait for an ingest slot before 503 overloaded",
    "body_budget": "bytes of unfinished request bodies held in memory, all together",
    "head_timeout_s": "seconds to send a request's line and headers (then closed)",
    "body_timeout_s": "seconds to send a whole body (408 timeout)",
    "keep_alive_s": "seconds an idle kept-alive connection stays open",
    "retry_after_s": "Retry-After of a 503 overloaded",
    "quota_readings_per_minute": "per node: readings a minute, refilling its bucket (429 quota)",
    "quota_readings_burst": "per node: readings its bucket holds (more than a 7-day backlog)",
    "quota_bytes_per_day": "per node: estimated stored bytes a day, refilling its bucket (429 quota)",
    "quota_bytes_burst": "per node: estimated stored bytes its bucket holds",
}


@dataclass(frozen=True)
class IngestLimits:
    max_body: int = DEFAULT_MAX_BODY
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
    window_ms: int = TIMESTAMP_WINDOW_MS
    max_readings: int = 10_000
    max_gaps: int = 1000  # a node sends at most 200 gaps and incidents with a batch (node/uploader.py)
    max_incidents: int = 1000
    max_connections: int = 1000  # the unit's LimitNOFILE=4096 leaves room for the store and logs
    max_requests: int = 256
    ingest_slots: int = 2  # the store writes one batch at a time: more only holds more memory
    ingest_wait_s: float = 10.0
    body_budget: int = 64 * 1024 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    # Longer than the node's 30 s upload interval, so a node on a metered SIM reuses its TLS
    # connection between rounds (4.0 vs 13.4 MB/day measured by bench/drain.py).
    keep_alive_s: float = 75.0
    retry_after_s: int = 5
    # per node (central/quotas.py): the example node makes 93,600 readings a day (65 a minute),
    # 655,200 in 7 days, ~12 MB a day at the 128 B a reading the quota counts
    quota_readings_per_minute: int = 1000
    quota_readings_burst: int = 1_000_000
    quota_bytes_per_day: int = 256 * 1024 * 1024
    quota_bytes_burst: int = 256 * 1024 * 1024


# lowest accepted value of each field (a config below it is an error naming the key)
_MINIMUM: dict[str, float] = {
    "max_body": 1024, "max_decompressed": 1024, "max_readings": 1, "max_gaps": 1, "max_incidents": 1,
    "max_connections": 1, "max_requests": 1, "ingest_slots": 1, "ingest_wait_s": 0.0,
    "body_budget": 1024, "head_timeout_s": 0.1, "body_timeout_s": 0.1, "keep_alive_s": 0.1,
    "retry_after_s": 1, "quota_readings_per_minute": 1, "quota_readings_burst": 1, "quota_bytes_per_day": 1,
    "quota_bytes_burst": 1,
}


def parse_limits(table: Any, base: IngestLimits | None = None, *, where: str = "[limits]") -> IngestLimits:
    """The ``[limits]`` table of the central's config over ``base``; raises `ConfigError` naming the key."""
    limits = base or IngestLimits()
    if table is None:
        return limits
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    types = {f.name: f.type for f in dataclasses.fields(IngestLimits)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in LIMIT_HELP:
            raise ConfigError(f"{where} {key}: unknown key (known: {', '.join(LIMIT_HELP)})")
        want_float = types[key] == "float"
        ok = type(value) is int or (want_float and type(value) is float)
        if not ok:
            raise ConfigError(f"{where} {key}: expected {'a number' if want_float else 'an integer'}, "
                              f"got {value!r}")
        if value < _MINIMUM[key]:
            raise ConfigError(f"{where} {key}: expected at least {_MINIMUM[key]}, got {value}")
        changes[key] = float(value) if want_float else value
    return dataclasses.replace(limits, **changes)


def describe_limits(limits: IngestLimits | None = None) -> str:
    """One line per limit with its default, for ``serve --help``."""
    limits = limits or IngestLimits()
    lines = ["[limits] table of --config (default, meaning):"]
    for key, meaning in LIMIT_HELP.items():
        lines.append(f"  {key} = {getattr(limits, key)}  {meaning}")
    return "\n".join(lines)
