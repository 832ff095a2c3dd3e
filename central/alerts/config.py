"""The ``[alerts]`` table of the central's config file, checked whole before anything starts.

```toml
[alerts]
late_after = "10m"         # a transition caused by a reading older than this is late: recorded only
backoff_initial = "1s"     # delivery retries: doubling up to backoff_max, forever
backoff_max = "30s"

[[alerts.rules]]
name = "flood"             # the rule's id (alerts, history, per-node state)
kind = "threshold"         # threshold | pm25_aqi | storm | silent
channel = "flood.depth_cm" # a channel, or "*.depth_cm" for that quantity of any sensor
above = 20.0               # open after for_readings consecutive readings >= above
for_readings = 2
clear_below = 15.0         # resolve once every reading stayed < clear_below for clear_after
clear_after = "10m"
nodes = ["pole-1"]         # only these nodes (default: every node); except_nodes = [...]
severity = "critical"

[[alerts.sinks]]
name = "city"
type = "webhook"           # POST JSON, HMAC-SHA256 signed with secret_file's secret
url = "https://ops.example.org/hooks/streetnode"
secret_file = "/etc/streetnode/webhook.secret"

[[alerts.sinks]]
name = "broker"
type = "mqtt"              # every key of a [[forward]] sink (host, port, tls, ca_file, ...)
host = "127.0.0.1"
topic_prefix = "streetnode"
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from central.forward.config import SinkConfig, parse_sink
from node.errors import ConfigError
from node.units import parse_duration

KINDS = ("threshold", "pm25_aqi", "storm", "silent")
SEVERITIES = ("info", "warning", "critical")
# VN_AQI (Vietnam Environment Administration, decision 1459/QD-TCMT 2019): PM2.5 in µg/m³ at the
# lower edge of each band (the hourly value is compared as it is)
VN_AQI_PM25 = {
    "good": 0.0,
    "moderate": 25.0,
    "poor": 50.0,
    "bad": 80.0,
    "very_bad": 150.0,
    "hazardous": 250.0,
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_CHANNEL_RE = re.compile(r"^(\*|[a-z][a-z0-9_]{0,31})\.[a-z][a-z0-9_]{0,63}$")
RULE_KEYS = {
    "name",
    "kind",
    "channel",
    "above",
    "for_readings",
    "clear_below",
    "clear_after",
    "nodes",
    "except_nodes",
    "severity",
    "band",
    "after",
    "buffering_grace",
    "buffering_age",
}


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    severity: str = "warning"
    channel: str | None = None
    above: float = 0.0
    for_readings: int = 1
    clear_below: float = 0.0
    clear_after_ms: int = 0
    nodes: tuple[str, ...] | None = None
    except_nodes: tuple[str, ...] = ()
    after_ms: int = 15 * 60_000  # silent
    buffering_grace_ms: int = 6 * 3600_000  # silent: how long a node that reported a backlog may be quiet
    buffering_age_ms: int = 120_000  # silent: a last batch whose oldest unsent reading was this old

    def applies(self, node_id: str) -> bool:
        return (self.nodes is None or node_id in self.nodes) and node_id not in self.except_nodes

    def matches(self, channel: str) -> bool:
        assert self.channel is not None
        sensor, _, q = self.channel.partition(".")
        got_sensor, _, got_q = channel.rpartition(".")
        return q == got_q and sensor in ("*", got_sensor)


@dataclass(frozen=True)
class WebhookSink:
    name: str
    url: str
    secret: bytes
    timeout_s: float = 5.0


@dataclass(frozen=True)
class AlertsConfig:
    rules: tuple[Rule, ...] = ()
    webhooks: tuple[WebhookSink, ...] = ()
    mqtt: tuple[SinkConfig, ...] = ()
    late_after_ms: int = 10 * 60_000
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sink_names(self) -> list[str]:
        return [s.name for s in self.webhooks] + [s.name for s in self.mqtt]


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _duration(raw: dict[str, Any], key: str, where: str, default: float, lo: float = 0.0) -> float:
    if key not in raw:
        return default
    try:
        value = parse_duration(raw[key])
    except ValueError:
        value = -1.0
    if value < lo:
        raise _fail(f"{where}.{key}", f'expected a duration such as "30s" or "10m", got {raw[key]!r}')
    return value


def _number(raw: dict[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{where}.{key}", f"expected a number, got {value!r}")
    return float(value)


def _names(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(f"{where}.{key}", f"expected a list of node ids, got {value!r}")
    return tuple(value)


def parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(where, "expected a table")
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(RULE_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(f"{where}.name", f"expected a name such as 'flood' ([a-z][a-z0-9_-]*), got {name!r}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(f"{where}.kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    severity = raw.get("severity", "critical" if kind in ("threshold", "silent") else "warning")
    if severity not in SEVERITIES:
        raise _fail(f"{where}.severity", f"expected one of {', '.join(SEVERITIES)}, got {severity!r}")
    common = {
        "name": name,
        "kind": kind,
        "severity": severity,
        "nodes": _names(raw, "nodes", where),
        "except_nodes": _names(raw, "except_nodes", where) or (),
    }
    if kind in ("threshold", "pm25_aqi"):
        channel = raw.get("channel", "*.pm2_5_ugm3" if kind == "pm25_aqi" else None)
        if not isinstance(channel, str) or not _CHANNEL_RE.match(channel):
            raise _fail(
                f"{where}.channel",
                f'expected "<sensor>.<quantity>" or "*.<quantity>" (e.g. "flood.depth_cm"), got {channel!r}',
            )
        if kind == "pm25_aqi":
            band = raw.get("band", "bad")
            if band not in VN_AQI_PM25:
                raise _fail(
                    f"{where}.band", f"expected a VN_AQI band, one of {', '.join(VN_AQI_PM25)}, got {band!r}"
                )
            above = clear_below = VN_AQI_PM25[band]
        else:
            above = _number(raw, "above", where)
            clear_below = _number(raw, "clear_below", where) if "clear_below" in raw else above
            if clear_below > above:
                raise _fail(
                    f"{where}.clear_below",
                    f"{clear_below:g} is above {where}.above ({above:g}); "
                    "expected at most above (hysteresis)",
                )
        for_readings = raw.get("for_readings", 1)
        if (
            isinstance(for_readings, bool)
            or not isinstance(for_readings, int)
            or not 1 <= for_readings <= 1000
        ):
            raise _fail(
                f"{where}.for_readings", f"expected a whole number from 1 to 1000, got {for_readings!r}"
            )
        return Rule(
            **common,
            channel=channel,
            above=above,
            clear_below=clear_below,
            for_readings=for_readings,
            clear_after_ms=int(_duration(raw, "clear_after", where, 0.0) * 1000),
        )
    if kind == "silent":
        return Rule(
            **common,
            after_ms=int(_duration(raw, "after", where, 900.0, lo=1.0) * 1000),
            buffering_grace_ms=int(_duration(raw, "buffering_grace", where, 6 * 3600.0) * 1000),
            buffering_age_ms=int(_duration(raw, "buffering_age", where, 120.0) * 1000),
        )
    return Rule(**common)


def _webhook(raw: dict[str, Any], where: str) -> WebhookSink:
    known = {"name", "type", "url", "secret_file", "timeout"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")
    url = raw.get("url")
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        raise _fail(f"{where}.url", f"expected an http:// or https:// URL, got {url!r}")
    path = raw.get("secret_file")
    if not isinstance(path, str) or not os.path.isfile(path):
        raise _fail(f"{where}.secret_file", f"expected the file holding the HMAC secret, got {path!r}")
    with open(path, "rb") as f:
        secret = f.read().strip()
    if len(secret) < 16:
        raise _fail(f"{where}.secret_file", f"{path}: the secret must be at least 16 bytes")
    return WebhookSink(raw["name"], url, secret, _duration(raw, "timeout", where, 5.0, lo=0.1))


def parse_alerts(doc: dict[str, Any]) -> AlertsConfig:
    """The ``[alerts]`` table of a parsed config document (absent: no rules, no sinks)."""
    raw = doc.get("alerts", {})
    if not isinstance(raw, dict):
        raise _fail("alerts", "expected a table")
    known = {"rules", "sinks", "late_after", "backoff_initial", "backoff_max"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(f"alerts.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise _fail("alerts.rules", "expected [[alerts.rules]] tables")
    rules = [parse_rule(r, f"alerts.rules[{i}]") for i, r in enumerate(rules_raw)]
    for i, r in enumerate(rules):
        if r.name in [x.name for x in rules[:i]]:
            raise _fail(f"alerts.rules[{i}].name", f"duplicate rule name {r.name!r}")
    sinks_raw = raw.get("sinks", [])
    if not isinstance(sinks_raw, list):
        raise _fail("alerts.sinks", "expected [[alerts.sinks]] tables")
    webhooks, mqtt, names = [], [], []
    for i, s in enumerate(sinks_raw):
        where = f"alerts.sinks[{i}]"
        if not isinstance(s, dict):
            raise _fail(where, "expected a table")
        name = s.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _fail(f"{where}.name", f"expected a name such as 'city' ([a-z][a-z0-9_-]*), got {name!r}")
        if name in names:
            raise _fail(f"{where}.name", f"duplicate sink name {name!r}")
        names.append(name)
        kind = s.get("type")
        if kind == "webhook":
            webhooks.append(_webhook(s, where))
        elif kind == "mqtt":  # the forwarder's own parser: the same keys, TLS and credentials
            mqtt.append(parse_sink({k: v for k, v in s.items() if k != "type"}, where))
        else:
            raise _fail(f"{where}.type", f"expected 'webhook' or 'mqtt', got {kind!r}")
    backoff_initial = _duration(raw, "backoff_initial", "alerts", 1.0, lo=0.01)
    backoff_max = _duration(raw, "backoff_max", "alerts", 30.0, lo=0.01)
    if backoff_initial > backoff_max:
        raise _fail("alerts.backoff_initial", "expected at most alerts.backoff_max")
    return AlertsConfig(
        tuple(rules),
        tuple(webhooks),
        tuple(mqtt),
        int(_duration(raw, "late_after", "alerts", 600.0) * 1000),
        backoff_initial,
        backoff_max,
    )
