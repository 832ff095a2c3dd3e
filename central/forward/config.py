"""``[[forward]]`` sinks in the central's config file (TOML), checked whole before anything starts.

```toml
[[forward]]
name = "thingsboard"          # the sink's id: its cursor and lease in the database
layout = "thingsboard"        # "thingsboard" (gateway API) or "plain" (<prefix>/<node>/<channel>)
host = "tb.example.org"
port = 8883                   # default 1883, or 8883 with tls
tls = true
ca_file = "/etc/streetnode/tb-ca.pem"   # default: the system CAs
username = "GATEWAY_ACCESS_TOKEN"       # ThingsBoard: the gateway device's token
password_file = "/etc/streetnode/tb.password"
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from node.errors import ConfigError

LAYOUTS = ("thingsboard", "plain")
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024  # ThingsBoard's default MQTT payload limit
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TOPIC_RE = re.compile(r"^[^+#\x00]{1,200}$")
KEYS = {"name", "layout", "host", "port", "tls", "ca_file", "cert_file", "key_file", "username", "password",
        "password_file", "client_id", "topic_prefix", "max_message_bytes", "max_messages_per_s",
        "chunk_readings", "start", "keepalive_s"}


@dataclass(frozen=True)
class SinkConfig:
    name: str
    layout: str
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    topic_prefix: str = "streetnode"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_messages_per_s: float = 1000.0
    chunk_readings: int = 2000
    start: str = "beginning"  # or "now": a new sink skips what is already stored
    keepalive_s: int = 30


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


def _int(raw: dict[str, Any], key: str, where: str, lo: int, hi: int, default: int) -> int:
    value = raw.get(key, default)
    _check(isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi,
           f"{where}.{key}", f"expected a whole number from {lo} to {hi}, got {value!r}")
    return value


def _str(raw: dict[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    _check(value is None or (isinstance(value, str) and value != ""), f"{where}.{key}",
           f"expected a non-empty string, got {value!r}")
    return value


def _file(raw: dict[str, Any], key: str, where: str) -> str | None:
    path = _str(raw, key, where)
    _check(path is None or os.path.isfile(path), f"{where}.{key}", f"no such file {path!r}")
    return path


def parse_sink(raw: Any, where: str) -> SinkConfig:
    _check(isinstance(raw, dict), where, "expected a table")
    unknown = sorted(set(raw) - KEYS)
    _check(not unknown, f"{where}.{unknown[0] if unknown else ''}",
           f"unknown key (known: {', '.join(sorted(KEYS))})")
    name = raw.get("name")
    _check(isinstance(name, str) and bool(_NAME_RE.match(name)), f"{where}.name",
           f"expected a name such as 'thingsboard' ([a-z][a-z0-9_-]*), got {name!r}")
    layout = raw.get("layout", "thingsboard")
    _check(layout in LAYOUTS, f"{where}.layout", f"expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    host = _str(raw, "host", where)
    _check(host is not None, f"{where}.host", "required (the broker's host name or address)")
    tls = raw.get("tls", False)
    _check(isinstance(tls, bool), f"{where}.tls", f"expected true or false, got {tls!r}")
    cert_file, key_file = _file(raw, "cert_file", where), _file(raw, "key_file", where)
    _check(bool(cert_file) == bool(key_file), f"{where}.cert_file", "give cert_file and key_file together")
    _check(not cert_file or tls, f"{where}.cert_file", "client certificates need tls = true")
    password = _str(raw, "password", where)
    password_file = _file(raw, "password_file", where)
    _check(not (password and password_file), f"{where}.password", "give password or password_file, not both")
    if password_file:
        with open(password_file, encoding="utf-8") as f:
            password = f.read().strip()
    prefix = raw.get("topic_prefix", "streetnode")
    _check(isinstance(prefix, str) and bool(_TOPIC_RE.match(prefix)), f"{where}.topic_prefix",
           f"expected a topic without + or #, got {prefix!r}")
    rate = raw.get("max_messages_per_s", 1000.0)
    _check(isinstance(rate, int | float) and not isinstance(rate, bool) and 0.1 <= rate <= 100_000,
           f"{where}.max_messages_per_s", f"expected a number from 0.1 to 100000, got {rate!r}")
    start = raw.get("start", "beginning")
    _check(start in ("beginning", "now"), f"{where}.start", f"expected 'beginning' or 'now', got {start!r}")
    return SinkConfig(
        name=name, layout=layout, host=host, port=_int(raw, "port", where, 1, 65535, 8883 if tls else 1883),
        tls=tls, ca_file=_file(raw, "ca_file", where), cert_file=cert_file, key_file=key_file,
        username=_str(raw, "username", where), password=password,
        client_id=_str(raw, "client_id", where) or f"streetnode-central-{name}", topic_prefix=prefix,
        max_message_bytes=_int(raw, "max_message_bytes", where, 1024, 256 * 1024 * 1024,
                               DEFAULT_MAX_MESSAGE_BYTES),
        max_messages_per_s=float(rate), chunk_readings=_int(raw, "chunk_readings", where, 1, 100_000, 2000),
        start=start, keepalive_s=_int(raw, "keepalive_s", where, 5, 3600, 30))


def parse_sinks(doc: dict[str, Any]) -> list[SinkConfig]:
    """The ``[[forward]]`` array of a parsed config document (none: an empty list)."""
    raw = doc.get("forward", [])
    _check(isinstance(raw, list), "forward", "expected [[forward]] tables")
    sinks = [parse_sink(item, f"forward[{i}]") for i, item in enumerate(raw)]
    names = [s.name for s in sinks]
    for i, name in enumerate(names):
        _check(name not in names[:i], f"forward[{i}].name", f"duplicate sink name {name!r}")
    return sinks
