"""Pushing a layer: check it with the node's own code, store a new version, start a rollout.

Used by `streetnode-central config push|rollback` (central/commands/config_cmd.py). A layer that
the node's checks refuse raises `ConfigError` with the node's one-line messages (exit 78); nothing
is stored then.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.fleet import db
from central.fleet.db import Layer, Rollout
from node.errors import ConfigError
from node.protocol import is_node_id
from node.remote_keys import check_layer, layer_hash, merge


@dataclass(frozen=True)
class Pushed:
    layer: Layer
    previous: Layer | None
    rollout: Rollout | None
    members: list[str]  # the group's nodes (a node push: the node)


def read_layer(path: str) -> str:
    """A layer file's text, parsed once to refuse what is not TOML (one line naming the file)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}") from None
    parse(text, path)
    return text


def parse(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None


def check_name(value: str, what: str) -> str:
    if not is_node_id(value):
        raise ConfigError(f"{what} {value!r}: expected 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return value


def parse_canary(text: str | None) -> float | None:
    """``"5%"`` or ``"5"`` -> 5.0 (percent of the group in the first wave)."""
    if text is None:
        return None
    try:
        pct = float(text.strip().removesuffix("%"))
    except ValueError:
        pct = -1.0
    if not 0 < pct < 100:
        raise ConfigError(f"--canary {text!r}: expected a percentage above 0 and below 100, such as 5%")
    return pct


def pick_canaries(members: list[str], pct: float, layer_id: int) -> list[str]:
    """ceil(pct % of the group), at least one; spread over the group by a hash, so the same nodes
    are not always first."""
    count = max(1, math.ceil(len(members) * pct / 100))
    ranked = sorted(members, key=lambda n: hashlib.sha256(f"{layer_id}:{n}".encode()).hexdigest())
    return sorted(ranked[:count])


def _check(tx: Any, scope: str, target: str, doc: dict[str, Any]) -> None:
    """The node's checks of the layer alone, then merged with the layers it combines with (a key
    pair such as backoff_initial/backoff_max may be split across the group and a node)."""
    problems = check_layer(doc)
    if problems:
        raise ConfigError(problems)
    if scope == "node":
        group = db.group_of(tx, target)
        others = [(f"group {group}", db.current_layer(tx, "group", group))] if group else []
        combos = [(name, merge(other.doc(), doc)) for name, other in others if other is not None]
    else:
        combos = []
        for node in db.members(tx, target):
            own = db.current_layer(tx, "node", node)
            if own is not None:
                combos.append((f"node {node}", merge(doc, own.doc())))
    for name, combined in combos:
        found = check_layer(combined)
        if found:
            raise ConfigError([f"{line} (combined with the layer of {name})" for line in found])


def push(store: Any, scope: str, target: str, text: str, *, author: str, note: str, now_ms: int,
         canary_pct: float | None = None, dry_run: bool = False) -> Pushed:
    """Check and store a new version of a layer; with ``canary_pct`` (a group) start a rollout.
    ``dry_run``: check only; the `Pushed` names version 0 and nothing is stored."""
    if scope not in db.SCOPES:
        raise ValueError(f"scope {scope!r}")
    doc = parse(text, f"{scope} {target}")
    if canary_pct is not None and scope != "group":
        raise ConfigError("--canary: only with --group (a node's own layer applies to that node)")

    def run(tx: Any) -> Pushed:
        if scope == "node" and not _node_exists(tx, target):
            raise ConfigError(f"--node {target!r}: no such node (add it with 'node add')")
        _check(tx, scope, target, doc)
        previous = db.current_layer(tx, scope, target)
        members = db.members(tx, target) if scope == "group" else [target]
        if dry_run:
            return Pushed(Layer(0, scope, target, text, layer_hash(doc), author, note, now_ms), previous,
                          None, members)
        layer = db.add_layer(tx, scope, target, text, author=author, note=note, now_ms=now_ms)
        rollout = None
        if canary_pct is not None and members:
            rollout = db.add_rollout(tx, layer.id, target, _in_effect(tx, target, previous),
                                     pick_canaries(members, canary_pct, layer.id), now_ms)
        return Pushed(layer, previous, rollout, members)

    return store.transaction(run, write=True)


def _node_exists(tx: Any, node_id: str) -> bool:
    return tx.execute("SELECT 1 FROM nodes WHERE node_id = ?", (node_id,)).fetchone() is not None


def _in_effect(tx: Any, group: str, previous: Layer | None) -> int | None:
    """The group version the nodes outside the first wave keep meanwhile."""
    if previous is None:
        return None
    rollout = db.latest_rollout(tx, group)
    if rollout is not None and rollout.layer_id == previous.id and rollout.state != "complete":
        return rollout.from_id  # the previous rollout never reached everyone
    return previous.id


def rollback_text(store: Any, scope: str, target: str, to_version: int | None) -> tuple[str, int]:
    """The TOML of the version to go back to (default: the one before the current) and its id."""

    def run(tx: Any) -> tuple[str, int]:
        versions = db.history(tx, scope, target)
        if not versions:
            raise ConfigError(f"--{scope} {target}: no configuration was pushed")
        if to_version is None:
            if len(versions) < 2:
                raise ConfigError(f"--{scope} {target}: only one version (v{versions[0].id}); "
                                  "push a new one or an empty file")
            found = versions[-2]
        else:
            found = next((v for v in versions if v.id == to_version), None)
            if found is None:
                known = ", ".join(str(v.id) for v in versions)
                raise ConfigError(f"--to {to_version}: not a version of {scope} {target} (its versions: "
                                  f"{known})")
        return found.toml, found.id

    return store.transaction(run)


def diff(previous: Layer | None, layer: Layer) -> list[str]:
    """Unified diff lines of two versions' TOML (every line of the new one when it is the first)."""
    before = previous.toml.splitlines() if previous else []
    name = f"{layer.scope} {layer.target}"
    return list(difflib.unified_diff(before, layer.toml.splitlines(),
                                     f"{name} v{previous.id}" if previous else f"{name} (none)",
                                     f"{name} v{layer.id}" if layer.id else f"{name} (checked)",
                                     lineterm=""))
