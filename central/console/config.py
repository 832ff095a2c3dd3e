"""The ``[console]`` table of the central's config file (``serve --config``); every key optional.

```toml
[console]
timezone = "Asia/Ho_Chi_Minh"   # times on the pages (IANA name)
late_after_s = 120              # no upload for this long: "late"
silent_after_s = 900            # ...for this long (or never): "silent"
buffering_age_s = 120           # the node's oldest unsent reading older than this: "buffering"
flood_bands_cm = [10, 20, 30]   # flood depth colour bands (ascending)
poll_s = 5                      # how often the overview refreshes (1-60 s)
tile_url = ""                   # optional map tiles, e.g. "https://tiles.city.example/{z}/{x}/{y}.png"
language = "en"                 # when the browser asks for neither en nor vi
```
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from typing import Any

from node.errors import ConfigError

LANGUAGES = ("en", "vi")


@dataclass(frozen=True)
class ConsoleConfig:
    timezone: str = "Asia/Ho_Chi_Minh"
    late_after_s: float = 120.0
    silent_after_s: float = 900.0
    buffering_age_s: float = 120.0
    flood_bands_cm: tuple[float, ...] = (10.0, 20.0, 30.0)
    poll_s: float = 5.0
    tile_url: str = ""
    language: str = "en"


def _number(raw: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"config: console.{key}: expected a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def parse_console(doc: dict[str, Any]) -> ConsoleConfig:
    """The ``[console]`` table of a parsed config file; raises `ConfigError` naming the key."""
    raw = doc.get("console", {})
    if not isinstance(raw, dict):
        raise ConfigError("config: console: expected a table ([console])")
    known = set(ConsoleConfig.__dataclass_fields__)
    for key in raw:
        if key not in known:
            raise ConfigError(f"config: console.{key}: unknown key (known: {', '.join(sorted(known))})")
    timezone = raw.get("timezone", ConsoleConfig.timezone)
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"config: console.timezone: expected an IANA time zone such as "
                          f"Asia/Ho_Chi_Minh, got {timezone!r}") from None
    late = _number(raw, "late_after_s", 1, 86400, ConsoleConfig.late_after_s)
    silent = _number(raw, "silent_after_s", 1, 30 * 86400, ConsoleConfig.silent_after_s)
    if silent <= late:
        raise ConfigError(f"config: console.silent_after_s: expected more than late_after_s ({late:g})")
    bands = raw.get("flood_bands_cm", list(ConsoleConfig.flood_bands_cm))
    if (not isinstance(bands, list) or not 1 <= len(bands) <= 6
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bands)
            or bands != sorted(set(bands))):
        raise ConfigError(f"config: console.flood_bands_cm: expected 1 to 6 ascending numbers, got {bands!r}")
    tile_url = raw.get("tile_url", "")
    if not isinstance(tile_url, str) or (tile_url and not tile_url.startswith(("https://", "http://", "/"))):
        raise ConfigError(f"config: console.tile_url: expected an http(s) URL or a path, got {tile_url!r}")
    language = raw.get("language", "en")
    if language not in LANGUAGES:
        raise ConfigError(f"config: console.language: expected one of {', '.join(LANGUAGES)}, "
                          f"got {language!r}")
    buffering = _number(raw, "buffering_age_s", 1, 86400, ConsoleConfig.buffering_age_s)
    return ConsoleConfig(timezone=timezone, late_after_s=late, silent_after_s=silent,
                         buffering_age_s=buffering,
                         flood_bands_cm=tuple(float(b) for b in bands),
                         poll_s=_number(raw, "poll_s", 1, 60, ConsoleConfig.poll_s),
                         tile_url=tile_url, language=language)
