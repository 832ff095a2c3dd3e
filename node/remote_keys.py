"""What the central may configure on a node, and how its layers combine with the pole's own file.

The central keeps *layers* (TOML documents) per group and per node (docs/fleet.md). A layer may
set only the keys in `REMOTE` (sections) and `SENSOR_REMOTE` (a ``[[sensors]]`` entry, matched by
its ``name``); every other key is the pole's own (`LOCAL_ONLY` says why). The central checks a
layer with `check_layer` when it is pushed, and the node checks it again when it arrives (the node
decides what it accepts), then validates the whole result with `node.config.validate`: one code,
the same one-line messages on both sides.

This module runs on the Pi and in the central: it imports only node.config and the standard
library.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from node.config import SECTIONS, SENSOR_TYPES, check_value, sensor_schema, unknown_key

# section -> keys the central may set (a table key such as node.location: the whole table)
REMOTE: dict[str, tuple[str, ...]] = {
    "node": ("log_level", "location"),
    "central": ("url", "connect_timeout", "read_timeout"),
    "upload": tuple(SECTIONS["upload"]),
    "storm": tuple(SECTIONS["storm"]),
}
# keys of a [[sensors]] entry the central may set; "name" selects the pole's sensor
SENSOR_REMOTE = ("interval", "enabled", "oversampling", "pings", "debounce")

# why the other keys stay on the pole (shown in the refusal)
LOCAL_ONLY: dict[str, str] = {
    "node.id": "the pole's identity",
    "node.state_dir": "where the pole keeps its buffer",
    "central.key_file": "a file on the pole",
    "central.ca_bundle": "a file on the pole",
    "buffer": "the only copy of the readings; changes need a restart",
    "status_led": "wiring of the pole",
    "emulation": "the pole's hardware",
    "fleet": "how the pole accepts remote configuration",
    "sensors": "wiring and calibration of the pole",
    "alarms": "a warning light wired to the pole; alarms change only at a restart",
}


def _local_only(where: str, reason: str) -> str:
    return f"{where}: may not come from the central ({reason}); set it in the pole's own file"


def _check_table(raw: Any, section: str, problems: list[str]) -> None:
    schema = SECTIONS[section]
    if not isinstance(raw, dict):
        problems.append(f"{section}: expected a table, got {type(raw).__name__}")
        return
    for key, value in raw.items():
        where = f"{section}.{key}"
        if key not in schema:
            problems.append(unknown_key(key, list(schema), where))
            continue
        if key not in REMOTE.get(section, ()):
            problems.append(_local_only(where, LOCAL_ONLY.get(where) or LOCAL_ONLY.get(section, "local")))
            continue
        f = schema[key]
        if f.kind == "table":
            sub = f.schema or {}
            if not isinstance(value, dict):
                problems.append(f"{where}: expected a table, got {type(value).__name__}")
                continue
            for sub_key, sub_value in value.items():
                if sub_key not in sub:
                    problems.append(unknown_key(sub_key, list(sub), f"{where}.{sub_key}"))
                    continue
                _, problem = check_value(sub_value, sub[sub_key], f"{where}.{sub_key}")
                if problem:
                    problems.append(problem)
            continue
        _, problem = check_value(value, f, where)
        if problem:
            problems.append(problem)


def _check_sensors(raw: Any, problems: list[str]) -> None:
    if not isinstance(raw, list):
        problems.append("sensors: expected an array of tables ([[sensors]])")
        return
    every_key = {k: f for stype in SENSOR_TYPES for k, f in sensor_schema(stype).items()}
    names: set[str] = set()
    for i, entry in enumerate(raw):
        path = f"sensors[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{path}: expected a table")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{path}.name: missing required key (the name of a sensor of the pole)")
        elif name in names:
            problems.append(f"{path}.name: duplicate sensor name {name!r}")
        else:
            names.add(name)
        for key, value in entry.items():
            where = f"{path}.{key}"
            if key == "name":
                continue
            if key not in every_key:
                problems.append(unknown_key(key, list(every_key), where))
            elif key not in SENSOR_REMOTE:
                problems.append(_local_only(where, LOCAL_ONLY["sensors"]))
            else:
                _, problem = check_value(value, every_key[key], where)
                if problem:
                    problems.append(problem)


def check_layer(doc: Any) -> list[str]:
    """Every problem of one central layer, one line each (empty: the layer is acceptable)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["expected a TOML document"]
    known = [*SECTIONS, "sensors", "alarms"]
    for section, value in doc.items():
        if section == "sensors":
            _check_sensors(value, problems)
        elif section == "alarms":
            problems.append(_local_only(section, LOCAL_ONLY[section]))
        elif section not in SECTIONS:
            problems.append(unknown_key(section, known, section, "section"))
        elif section not in REMOTE:
            problems.append(_local_only(section, LOCAL_ONLY.get(section, "local")))
        else:
            _check_table(value, section, problems)
    up = doc.get("upload") if isinstance(doc.get("upload"), dict) else {}
    if not problems and "backoff_initial" in up and "backoff_max" in up:
        first, _ = check_value(up["backoff_initial"], SECTIONS["upload"]["backoff_initial"], "")
        most, _ = check_value(up["backoff_max"], SECTIONS["upload"]["backoff_max"], "")
        if first > most:
            problems.append("upload.backoff_initial: expected at most upload.backoff_max")
    return problems


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base`` (layers, or a layer over the pole's file): tables key by key,
    ``[[sensors]]`` entries by name (a layer never adds a sensor to the pole's file: see
    `overlay`). Neither argument is changed."""
    out = copy.deepcopy(base)
    for section, value in top.items():
        if section == "sensors" and isinstance(value, list):
            sensors = out.setdefault("sensors", [])
            by_name = {s.get("name"): s for s in sensors if isinstance(s, dict)}
            for entry in value:
                name = entry.get("name") if isinstance(entry, dict) else None
                if name in by_name:
                    by_name[name].update(copy.deepcopy(entry))
                else:
                    sensors.append(copy.deepcopy(entry))
                    by_name[name] = sensors[-1]
        elif isinstance(value, dict) and isinstance(out.get(section), dict):
            out[section] = {**out[section], **copy.deepcopy(value)}
        else:
            out[section] = copy.deepcopy(value)
    return out


def overlay(local_raw: dict[str, Any], layer: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The pole's parsed file with a (checked, merged) central layer over it, and the problems that
    only the pole can see (a sensor name the pole does not have)."""
    problems = []
    local_names = {s.get("name") for s in local_raw.get("sensors", []) if isinstance(s, dict)}
    for i, entry in enumerate(layer.get("sensors", [])):
        if isinstance(entry, dict) and entry.get("name") not in local_names:
            problems.append(f"sensors[{i}].name: this pole has no sensor {entry.get('name')!r} "
                            f"(it has: {', '.join(sorted(map(str, local_names))) or 'none'})")
    return merge(local_raw, layer), problems


def layer_hash(doc: dict[str, Any]) -> str:
    """First 16 hex digits of SHA-256 over a layer's canonical JSON (the same on node and central)."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
