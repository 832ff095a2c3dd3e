"""Evaluation and lifecycle: rules run when a batch is stored; silence is checked on a timer.

`AlertEngine.on_batch` runs right after the store committed a batch (the ingest request's thread):
in one write transaction it moves each applicable rule's state for the node, opens / resolves
alerts, records an event per transition and queues one delivery per sink. A transition caused by a
reading older than ``late_after`` is **late**: recorded in the history, never delivered — only a
transition of an alert whose opening was delivered is delivered (so a sink that heard "open" also
hears "resolved"). Readings older than what a rule has judged (the backlog a node sends after the
live batch that follows an outage) run through a second state machine (`_threshold`): what it finds
is late history. An admin's acknowledgement is a transition too.

Silence (`check_silent`, every few seconds): a node with no upload for a silent rule's ``after``
is *silent* (alert) unless its last batch reported buffering — its oldest unsent reading
(``oldest_reading_age_s``) was at least ``buffering_age`` old, i.e. it holds a backlog it could not
send: then it is *buffering* and gets no alert until ``buffering_grace`` has passed too. (Every
batch reports a ``backlog_readings`` > 0, its own readings being unacknowledged when it is built,
so the age is the evidence.) The next batch resolves a silent alert.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from central.alerts.config import AlertsConfig, Rule
from central.alerts.rules import RuleState, flag_step, threshold_step
from node.model import UNTRUSTED
from node.protocol import HOLE_REASONS

if TYPE_CHECKING:  # the database side imports the forwarder's (and its layouts'): not at app import
    from central.alerts.db import AlertsDb

log = logging.getLogger("streetnode.central.alerts")
SILENT_EVERY_S = 2.0
RULES_REFRESH_S = 5.0  # how soon a rule changed in the console (by any serve process) takes effect
BACKFILL_SUFFIX = "#backfill"  # alert_rule_state of the state machine that judges backfill
# Built in, always on (#20): a node whose readings conflict with what the central holds (docs/alerts.md)
CONFLICT_RULE = Rule(name="builtin.node_conflict", kind="conflict", severity="critical")
CONFLICT_QUIET_MS = 3600_000  # resolved once the node had no conflict and no identity clash this long
CONFLICT_CHECK_S = 60.0


def _buffering(info: Any, rule: Rule) -> bool:
    """The node's last batch said it holds readings it could not send (an old backlog)."""
    age_s = (info.health or {}).get("oldest_reading_age_s")
    return isinstance(age_s, int | float) and age_s * 1000 >= rule.buffering_age_ms


class AlertError(Exception):
    """An operator's request that cannot be done (unknown alert, already resolved...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AlertEngine:
    def __init__(
        self,
        config: AlertsConfig,
        db: AlertsDb,
        *,
        list_nodes: Callable[[], list[Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self._list_nodes = list_nodes
        self.on_enqueued: list[Callable[[], None]] = []  # delivery workers' wake-ups
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"batches": 0, "transitions": 0, "late": 0, "errors": 0}
        self._rules: tuple[Rule, ...] | None = None
        self._rules_at = 0.0
        self._rules_lock = threading.Lock()
        self._conflicts_checked = 0.0

    def rules(self) -> tuple[Rule, ...]:
        """The rules in force: ``[alerts]``'s, overridden / added to by the ones stored in the
        database by an admin (central/alerts/stored.py), re-read every `RULES_REFRESH_S`."""
        with self._rules_lock:
            now = time.monotonic()
            if self._rules is None or now - self._rules_at >= RULES_REFRESH_S:
                from central.alerts.stored import effective_rules

                try:
                    self._rules = effective_rules(self.config.rules, self.db.stored_rules())
                except Exception as e:  # the database is away: the file's (or the last known) rules
                    log.warning("alerts: reading the stored rules failed: %s", e)
                    self._rules = self._rules if self._rules is not None else self.config.rules
                self._rules_at = now
            return self._rules

    def rules_changed(self) -> None:
        """An admin changed a rule (this process): read them again at the next batch."""
        with self._rules_lock:
            self._rules = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---------------------------------------------------------------- evaluation
    def on_batch(self, batch: Any, now_ms: int | None = None) -> int:
        """Evaluate the rules on a stored batch; returns the number of transitions. Never raises."""
        rules = [r for r in self.rules() if r.applies(batch.node_id)]
        if not rules:
            return 0
        now = self.now_ms() if now_ms is None else now_ms
        try:
            count = self.db.write(lambda conn: self._evaluate(conn, rules, batch, now))
        except Exception as e:  # the batch is stored; alerts must not fail the node's upload
            self.stats["errors"] += 1
            log.error("alerts: evaluating a batch of %s failed: %s", batch.node_id, e)
            return 0
        self.stats["batches"] += 1
        if count:
            self._wake()
        return count

    def _evaluate(self, conn: Any, rules: list[Rule], batch: Any, now: int) -> int:
        node = batch.node_id
        count = 0
        rows = batch.rows()
        for rule in rules:
            if rule.kind == "silent":
                self.db.rule_state(conn, rule.name, node)  # takes turns with the silence check
                active = self.db.active_alert(conn, rule.name, node)
                if active is not None:
                    count += self._transition(conn, rule, node, "resolve", now, now, None, False)
                continue
            st = RuleState.loads(self.db.rule_state(conn, rule.name, node))
            if rule.kind == "storm":
                on = batch.health.get("storm")
                if isinstance(on, bool):
                    change = flag_step(st, batch.sent_ms, on)
                    if change:
                        late = now - batch.sent_ms > self.config.late_after_ms
                        count += self._transition(conn, rule, node, change, now, batch.sent_ms, None, late)
            else:
                count += self._threshold(conn, rule, node, st, rows, now)
            self.db.save_rule_state(conn, rule.name, node, st.dumps())
        return count

    def _threshold(self, conn: Any, rule: Rule, node: str, st: RuleState, rows: list[Any], now: int) -> int:
        """Readings newer than the rule last judged move the live state; older ones (the backfill a
        node sends after the live batch that follows an outage) run through a second state machine
        that starts where the live state was before the gap, and are recorded as late."""
        readings = sorted(
            (wall_ms, value)
            for _, channel, value, flags, wall_ms, _, _ in rows
            if value is not None and not flags & UNTRUSTED and rule.matches(channel)
        )
        if not readings:
            return 0
        backfill_key = f"{rule.name}{BACKFILL_SUFFIX}"
        bf = RuleState.loads(self.db.rule_state(conn, backfill_key, node))
        count = 0
        if readings[0][0] > st.last_ms:  # nothing older pending: a later gap starts from here
            if bf.active and not st.active:  # the backfill ended inside an episode the live state left
                count += self._backfill_transition(conn, rule, node, "resolve", now, st.last_ms, None)
            bf = RuleState(**vars(st))
        for wall_ms, value in readings:
            if bf.last_ms < wall_ms <= st.last_ms:
                change = threshold_step(rule, bf, wall_ms, value)
                if change:
                    count += self._backfill_transition(conn, rule, node, change, now, wall_ms, value)
            elif wall_ms > st.last_ms:
                change = threshold_step(rule, st, wall_ms, value)
                if change:
                    late = now - wall_ms > self.config.late_after_ms
                    count += self._transition(conn, rule, node, change, now, wall_ms, value, late)
        self.db.save_rule_state(conn, backfill_key, node, bf.dumps())
        return count

    def _backfill_transition(
        self, conn: Any, rule: Rule, node: str, change: str, now: int, reading_ms: int, value: float | None
    ) -> int:
        """A crossing found in backfill: a late alert of its own when no live alert is active,
        else a late event in the live alert's history (its state follows the newest readings)."""
        self.stats["late"] += 1
        active = self.db.active_alert(conn, rule.name, node)
        if active is not None and not active["late"]:
            transition = "open" if change == "open" else "resolved"
            self.db.insert_event(
                conn,
                active["id"],
                transition,
                now,
                reading_ms,
                value,
                True,
                detail="backfill: seen in readings older than the live state; the state follows the newest",
            )
            return 0
        return self._transition(conn, rule, node, change, now, reading_ms, value, True)

    # ---------------------------------------------------------------- built in: conflicts (#20)
    def on_conflict(self, node: str, *, clash: bool, detail: str, now_ms: int | None = None,
                    lost: bool = False) -> int:
        """Open the built-in alert of a node whose readings conflict with stored ones, whose
        identities alternate, or that found its buffer rolled back or ``lost``: "two devices share
        node id X" when ``clash``, else "node X's buffer rolled back" / "... was lost" (an open one
        of the latter becomes the former). Never raises."""
        now = self.now_ms() if now_ms is None else now_ms
        what = (f"two devices share node id {node}" if clash else
                f"node {node}'s buffer was lost" if lost else f"node {node}'s buffer rolled back")
        summary = f"{what}: {detail}"[:500]

        def run(conn: Any) -> int:
            self.db.rule_state(conn, CONFLICT_RULE.name, node)  # takes turns with other processes
            active = self.db.active_alert(conn, CONFLICT_RULE.name, node)
            if active is not None:
                if clash and not active["summary"].startswith("two devices"):
                    self.db.update_alert(conn, active["id"], summary=summary)
                return 0
            return self._transition(conn, CONFLICT_RULE, node, "open", now, now, None, False, summary=summary)

        try:
            count = self.db.write(run)
        except Exception as e:  # the batch is stored; alerts must not fail the node's upload
            self.stats["errors"] += 1
            log.error("alerts: the conflict alert of %s failed: %s", node, e)
            return 0
        if count:
            self._wake()
        return count

    def check_conflicts(self, now_ms: int | None = None) -> int:
        """Resolve the built-in alert of nodes with no conflict, no identity clash and no rolled-back
        or lost buffer reported for `CONFLICT_QUIET_MS`; returns how many were resolved."""
        from central.integrity import CLASH_WINDOW_MS, IDENTITY_SELECT, clash, identities

        now = self.now_ms() if now_ms is None else now_ms

        def run(conn: Any) -> int:
            resolved = 0
            rows = self.db._exec(conn, "SELECT DISTINCT node_id FROM alerts WHERE rule = ? AND state IN "
                                 "('open', 'acknowledged')", (CONFLICT_RULE.name,)).fetchall()
            for (node,) in rows:
                last = self.db._exec(conn, "SELECT MAX(last_seen_ms) FROM reading_conflicts "
                                     "WHERE node_id = ?", (node,)).fetchone()
                if last is not None and last[0] is not None and now - int(last[0]) < CONFLICT_QUIET_MS:
                    continue
                hole = self.db._exec(conn, "SELECT MAX(received_ms) FROM incidents WHERE node_id = ? "
                                     f"AND kind IN ({', '.join('?' * len(HOLE_REASONS))})",
                                     (node, *HOLE_REASONS)).fetchone()
                if hole is not None and hole[0] is not None and now - int(hole[0]) < CONFLICT_QUIET_MS:
                    continue
                found = identities(self.db._exec(conn, IDENTITY_SELECT, (node,)).fetchall())
                if clash(found, now, min(CLASH_WINDOW_MS, CONFLICT_QUIET_MS)):
                    continue
                resolved += self._transition(conn, CONFLICT_RULE, node, "resolve", now, None, None, False)
            return resolved

        count = self.db.write(run)
        if count:
            self._wake()
        return count

    def _summary(self, rule: Rule, node: str, value: float | None) -> str:
        if rule.kind == "silent":
            return f"{node}: no upload for {rule.after_ms // 60000} min and no backlog reported"
        if rule.kind == "storm":
            return f"{node}: storm mode"
        return f"{node}: {rule.channel} {value:g} >= {rule.above:g}"

    def _transition(
        self,
        conn: Any,
        rule: Rule,
        node: str,
        change: str,
        now: int,
        reading_ms: int | None,
        value: float | None,
        late: bool,
        summary: str | None = None,
    ) -> int:
        """Apply one open/resolve; returns 1 if it changed an alert."""
        self.stats["transitions"] += 1
        self.stats["late"] += int(late)
        if change == "open":
            active = self.db.active_alert(conn, rule.name, node)
            if active is not None and (late or not active["late"]):
                return 0
            if active is not None:  # a late alert from backfill gives way to the live one
                self.db.update_alert(conn, active["id"], state="resolved", resolved_ms=now)
                self.db.insert_event(
                    conn,
                    active["id"],
                    "resolved",
                    now,
                    reading_ms,
                    value,
                    True,
                    detail="superseded by a live alert",
                )
            alert_id = self.db.insert_alert(
                conn,
                {
                    "node_id": node,
                    "rule": rule.name,
                    "kind": rule.kind,
                    "severity": rule.severity,
                    "channel": rule.channel,
                    "state": "open",
                    "value": value,
                    "summary": summary or self._summary(rule, node, value),
                    "late": int(late),
                    "delivered": int(not late),
                    "opened_ms": now,
                },
            )
            event_id = self.db.insert_event(conn, alert_id, "open", now, reading_ms, value, late)
            if not late:
                self._enqueue(conn, alert_id, event_id, "open", now, reading_ms, value, late)
            log.warning(
                "alert %d %s: %s%s",
                alert_id,
                "OPEN",
                summary or self._summary(rule, node, value),
                " (late: recorded, not delivered)" if late else "",
            )
            return 1
        alert = self.db.active_alert(conn, rule.name, node)
        if alert is None:
            return 0
        self.db.update_alert(conn, alert["id"], state="resolved", resolved_ms=now)
        event_id = self.db.insert_event(conn, alert["id"], "resolved", now, reading_ms, value, late)
        if alert["delivered"]:
            self._enqueue(conn, alert["id"], event_id, "resolved", now, reading_ms, value, late)
        log.warning("alert %d RESOLVED: %s", alert["id"], alert["summary"])
        return 1

    def acknowledge(self, alert_id: int, actor: str, note: str | None = None) -> dict[str, Any]:
        now = self.now_ms()

        def run(conn: Any) -> dict[str, Any]:
            alert = self.db.get(conn, alert_id)
            if alert is None:
                raise AlertError("not_found", f"no alert {alert_id}")
            if alert["state"] != "open":
                raise AlertError(
                    "conflict",
                    f"alert {alert_id} is {alert['state']}; only an open alert can be acknowledged",
                )
            self.db.update_alert(
                conn, alert_id, state="acknowledged", acknowledged_ms=now, acknowledged_by=actor
            )
            event_id = self.db.insert_event(
                conn, alert_id, "acknowledged", now, None, None, False, actor, note
            )
            if alert["delivered"]:
                self._enqueue(conn, alert_id, event_id, "acknowledged", now, None, None, False)
            return self.db.get(conn, alert_id)  # type: ignore[return-value]

        doc = self.db.write(run)
        self._wake()
        return doc

    # ---------------------------------------------------------------- silence
    def check_silent(self, now_ms: int | None = None) -> int:
        rules = [r for r in self.rules() if r.kind == "silent"]
        if not rules or self._list_nodes is None:
            return 0
        now = self.now_ms() if now_ms is None else now_ms
        count = 0
        for info in self._list_nodes():
            if info.last_seen_ms is None:
                continue
            quiet_ms = now - info.last_seen_ms
            for rule in rules:
                buffering = _buffering(info, rule)
                if not rule.applies(info.node_id) or quiet_ms < rule.after_ms:
                    continue
                if buffering and quiet_ms < rule.after_ms + rule.buffering_grace_ms:
                    continue
                count += self.db.write(
                    lambda conn, rule=rule, node=info.node_id: self._open_silent(conn, rule, node, now)
                )
        if count:
            self._wake()
        return count

    def _open_silent(self, conn: Any, rule: Rule, node: str, now: int) -> int:
        """Open a silent alert, re-checked under the (rule, node) lock: a batch stored since the
        node list was read means the node spoke."""
        self.db.rule_state(conn, rule.name, node)
        seen = self.db.last_seen(conn, node)
        if seen is None or now - seen < rule.after_ms:
            return 0
        return self._transition(conn, rule, node, "open", now, seen, None, False)

    def node_states(self, now_ms: int | None = None) -> dict[str, str]:
        """node -> "reporting" / "buffering" / "silent" by the first silent rule (for the API)."""
        rules = [r for r in self.rules() if r.kind == "silent"]
        if not rules or self._list_nodes is None:
            return {}
        now = self.now_ms() if now_ms is None else now_ms
        out = {}
        for info in self._list_nodes():
            rule = next((r for r in rules if r.applies(info.node_id)), None)
            if rule is None or info.last_seen_ms is None:
                continue
            quiet = now - info.last_seen_ms >= rule.after_ms
            buffering = _buffering(info, rule)
            out[info.node_id] = "reporting" if not quiet else "buffering" if buffering else "silent"
        return out

    # ---------------------------------------------------------------- delivery payloads
    def _enqueue(
        self,
        conn: Any,
        alert_id: int,
        event_id: int,
        transition: str,
        now: int,
        reading_ms: int | None,
        value: float | None,
        late: bool,
    ) -> None:
        alert = self.db.get(conn, alert_id)
        assert alert is not None
        dedupe_key = f"alert-{alert_id}-{transition}-{event_id}"
        event = {
            "dedupe_key": dedupe_key,
            "transition": transition,
            "at_ms": now,
            "reading_ms": reading_ms,
            "value": value,
            "late": late,
            "alert": alert,
        }
        body = json.dumps(event, sort_keys=True)
        for sink in self.config.webhooks:
            self.db.enqueue(conn, sink.name, event_id, dedupe_key, body, now)
        if self.config.mqtt:
            active = self.db.node_active(conn, alert["node"])
            state = json.dumps({"node": alert["node"], "updated_ms": now, "alerts": active}, sort_keys=True)
            for mqtt_sink in self.config.mqtt:
                base = f"{mqtt_sink.topic_prefix}/alerts/{alert['node']}"
                messages = [
                    {"topic": f"{base}/events", "payload": body, "retain": False},
                    {"topic": f"{base}/state", "payload": state, "retain": True},
                ]
                self.db.enqueue(conn, mqtt_sink.name, event_id, dedupe_key, json.dumps(messages), now)

    def _wake(self) -> None:
        for wake in self.on_enqueued:
            wake()

    # ---------------------------------------------------------------- the silence timer
    def start(self) -> None:
        """The silence timer (it finds silent rules added in the console later too)."""
        if self._list_nodes is not None:
            self._thread = threading.Thread(target=self._run, name="alerts-silent", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SILENT_EVERY_S):
            try:
                self.check_silent()
            except Exception as e:  # the database is away: next time
                log.warning("alerts: silence check failed: %s", e)
            if time.monotonic() - self._conflicts_checked >= CONFLICT_CHECK_S:
                self._conflicts_checked = time.monotonic()
                try:
                    self.check_conflicts()
                except Exception as e:  # the database is away: next time
                    log.warning("alerts: conflict check failed: %s", e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
