"""Alert rules stored in the database by an admin (the console's rules page), beside ``[alerts]``.

**Precedence**: the file's ``[[alerts.rules]]`` come first, in their order; a stored rule with the
name of a file rule *replaces* it (same place), or *disables* it when the stored row is disabled;
a stored rule with a new name is *added* after the file's (by name). So an admin can tighten or
switch off a rule of the file without editing it, and removing the stored row (not offered in the
console: disable instead) gives the file's rule back. A stored rule is checked by the same parser
as the file (`parse_rule`), when saved and again when loaded (one that no longer parses is skipped
and logged). Every change is audited (``alert_rule_audit``: who, when, the action and the rule).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from central.alerts.config import Rule, parse_rule
from node.errors import ConfigError

log = logging.getLogger("streetnode.central.alerts")
ACTIONS = ("save", "disable", "enable")


@dataclass(frozen=True)
class StoredRule:
    name: str
    doc: dict[str, Any] | None  # None: only switches the file's rule of this name off / on
    enabled: bool
    updated_ms: int
    updated_by: str


def effective_rules(file_rules: tuple[Rule, ...], stored: list[StoredRule]) -> tuple[Rule, ...]:
    """The rules in force: the file's, replaced / disabled / added to by the stored ones."""
    by_name = {s.name: s for s in stored}
    parsed: dict[str, Rule] = {}
    for s in stored:
        if not s.enabled or s.doc is None:  # None: a file rule switched off (then on) in the console
            continue
        try:
            parsed[s.name] = parse_rule(s.doc, f"stored rule {s.name}")
        except ConfigError as e:  # a stored rule the parser no longer takes: skip it
            log.error("alerts: %s: skipped", e)
    rules: list[Rule] = []
    for rule in file_rules:
        row = by_name.get(rule.name)
        if row is None or (row.enabled and row.doc is None):
            rules.append(rule)
        elif rule.name in parsed:
            rules.append(parsed.pop(rule.name))
    rules.extend(parsed[name] for name in sorted(parsed))
    return tuple(rules)


def rule_from_form(form: dict[str, str]) -> tuple[dict[str, Any], Rule]:
    """The console's form (strings) -> the rule's table and the parsed `Rule`; raises ConfigError
    naming the field (``rule.above: expected a number, got 'abc'``)."""
    doc: dict[str, Any] = {}
    for key in ("name", "kind", "channel", "severity", "band", "clear_after", "after"):
        value = form.get(key, "").strip()
        if value:
            doc[key] = value
    for key in ("above", "clear_below"):
        value = form.get(key, "").strip()
        if value:
            try:
                doc[key] = float(value)
            except ValueError:
                doc[key] = value  # the parser names the field and what it expected
    value = form.get("for_readings", "").strip()
    if value:
        doc["for_readings"] = int(value) if value.isdigit() else value
    for key in ("nodes", "except_nodes"):
        value = form.get(key, "").strip()
        if value:
            doc[key] = [n.strip() for n in value.split(",") if n.strip()]
    return doc, parse_rule(doc, "rule")


def rule_doc(rule: Rule) -> dict[str, Any]:
    """A rule as the console shows it (times in seconds)."""
    doc: dict[str, Any] = {"name": rule.name, "kind": rule.kind, "severity": rule.severity,
                           "nodes": list(rule.nodes) if rule.nodes is not None else None,
                           "except_nodes": list(rule.except_nodes)}
    if rule.kind in ("threshold", "pm25_aqi"):
        doc.update(channel=rule.channel, above=rule.above, clear_below=rule.clear_below,
                   for_readings=rule.for_readings, clear_after_s=rule.clear_after_ms / 1000)
    if rule.kind == "silent":
        doc.update(after_s=rule.after_ms / 1000, buffering_grace_s=rule.buffering_grace_ms / 1000,
                   buffering_age_s=rule.buffering_age_ms / 1000)
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True)


def rule_table(engine: Any) -> dict[str, Any]:
    """Every rule for the console and ``GET /v1/alerts/rules``: those in force, then the disabled
    ones, each with its source and who changed it last; plus the newest 50 audit entries."""
    stored = {s.name: s for s in engine.db.stored_rules()}
    file_rules = {r.name: r for r in engine.config.rules}
    engine.rules_changed()
    rows = []
    for rule in engine.rules():
        row = stored.get(rule.name)
        source = "file" if row is None else "console" if rule.name not in file_rules else "file+console"
        rows.append({**rule_doc(rule), "enabled": True, "source": source,
                     "updated_by": row.updated_by if row else None,
                     "updated_ms": row.updated_ms if row else None})
    for name, row in sorted(stored.items()):
        if row.enabled:
            continue
        if row.doc is not None:
            try:
                doc = rule_doc(parse_rule(row.doc, f"stored rule {name}"))
            except ConfigError:
                doc = {"name": name, "kind": str(row.doc.get("kind")), "severity": "?"}
        elif name in file_rules:
            doc = rule_doc(file_rules[name])
        else:
            continue
        source = "console" if name not in file_rules else "file+console"
        rows.append({**doc, "enabled": False, "source": source, "updated_by": row.updated_by,
                     "updated_ms": row.updated_ms})
    return {"rules": rows, "audit": engine.db.rule_audit(50)}


def save_from_form(engine: Any, form: dict[str, str], actor: str) -> Rule:
    """Add or replace a rule from the console's form (validated by `parse_rule`); audited."""
    doc, rule = rule_from_form(form)
    engine.db.save_rule(rule.name, dumps(doc), True, "save", actor, engine.now_ms())
    engine.rules_changed()
    return rule


def switch(engine: Any, name: str, enabled: bool, actor: str) -> None:
    """Disable or enable the rule ``name`` (of the file or stored); audited."""
    known = {r.name for r in engine.config.rules} | {s.name for s in engine.db.stored_rules()}
    if name not in known:
        raise ConfigError(f"rule.name: no rule {name!r} (known: {', '.join(sorted(known)) or 'none'})")
    action = "enable" if enabled else "disable"
    engine.db.save_rule(name, None, enabled, action, actor, engine.now_ms())
    engine.rules_changed()
