"""The forwarding loop of one sink, in a thread of ``serve``.

Per round: hold the sink's lease → read the next chunk after the cursor (stored order) → publish it
(QoS 1, paced, within the size limit) → when every PUBACK is in, advance the cursor (fenced by the
lease). A broker that is down, refuses us or stops acknowledging fails the round: the cursor stays,
the connection is dropped, and the chunk is sent again after a backoff (1 s doubling to 30 s), so a
broker down for ten minutes receives everything, in order, within 30 s of its return. A resend
repeats byte-identical messages (``ts`` is the reading's own time): ThingsBoard overwrites the same
points. Delivery is therefore at least once; exactly once while nothing crashes.

Feeds are what a sink forwards, each with its own cursor: readings now; alert transitions (issue 15)
plug in as another `Feed` (its ``fetch`` reads the transitions after a position, its ``messages``
builds their MQTT messages).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from central.forward.config import SinkConfig
from central.forward.db import FEED_READINGS, ForwardDb, ForwardDbError
from central.forward.layouts import FwdReading, Message, PlainLayout, ThingsBoardLayout, make_layout
from central.forward.mqtt import LinkDown, MqttLink

log = logging.getLogger("streetnode.central.forward")
Layout = ThingsBoardLayout | PlainLayout


class Feed(Protocol):
    name: str

    def fetch(self, db: ForwardDb, position: str, limit: int) -> tuple[list[Any], str]: ...

    def nodes(self, items: list[Any]) -> list[str]: ...

    def messages(self, layout: Layout, items: list[Any]) -> list[Message]: ...


class ReadingsFeed:
    name = FEED_READINGS

    def fetch(self, db: ForwardDb, position: str, limit: int) -> tuple[list[FwdReading], str]:
        return db.readings_after(position, limit)

    def nodes(self, items: list[FwdReading]) -> list[str]:
        return list(dict.fromkeys(r.node_id for r in items))

    def messages(self, layout: Layout, items: list[FwdReading]) -> list[Message]:
        return layout.reading_messages(items)


@dataclass
class ForwardStats:
    readings: int = 0
    messages: int = 0
    rounds: int = 0
    failures: int = 0
    last_error: str | None = None
    holding_lease: bool = False
    by_feed: dict[str, int] = field(default_factory=dict)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str) -> bool:
    """True for a holder on this host whose process no longer exists (e.g. killed, then restarted)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Forwarder:
    def __init__(self, sink: SinkConfig, db: ForwardDb, *, feeds: list[Feed] | None = None,
                 holder: str | None = None, clock: Callable[[], float] = time.time,
                 lease_ttl_s: float = 30.0, poll_s: float = 0.5, backoff_max_s: float = 30.0,
                 ack_timeout_s: float = 30.0) -> None:
        self.sink = sink
        self.db = db
        self.feeds: list[Feed] = feeds if feeds is not None else [ReadingsFeed()]
        self.holder = holder or default_holder()
        self.clock = clock
        self.lease_ttl_s = lease_ttl_s
        self.poll_s = poll_s
        self.backoff_max_s = backoff_max_s
        self.layout = make_layout(sink.layout, prefix=sink.topic_prefix,
                                  max_message_bytes=sink.max_message_bytes)
        self.link = MqttLink(sink, ack_timeout_s=ack_timeout_s)
        self.stats = ForwardStats()
        self._stop = threading.Event()  # no new round
        self._abort = threading.Event()  # give up the round in flight too
        self._thread: threading.Thread | None = None
        self._positions: dict[str, str] = {}
        self._lease_renew_at = 0.0
        self._sent_devices: set[str] = set()
        self._sent_health: dict[str, dict[str, Any]] = {}

    # ---- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"forward-{self.sink.name}", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 5.0, timeout_s: float = 10.0) -> None:
        """Finish the chunk in flight if it completes within ``grace_s`` (so a handover repeats
        nothing), else abandon it (the next holder resends it), then release the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace_s)
            self._abort.set()
            self._thread.join(timeout_s)
        self.link.close()
        if self.stats.holding_lease:
            try:
                self.db.release_lease(self.sink.name, self.holder)
            except ForwardDbError:
                pass  # it expires by itself
        self.db.close()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- the loop
    def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                if not self._hold_lease():
                    self._stop.wait(self.lease_ttl_s / 3)
                    continue
                if not self.link.connected:
                    self.link.connect()
                    self._sent_devices.clear()
                    self._sent_health.clear()
                    log.info("forward %s: connected to %s:%s", self.sink.name, self.sink.host, self.sink.port)
                moved = self.round()
                backoff = 1.0
                if moved is None or self._stop.is_set():
                    return
                if not moved:
                    self._stop.wait(self.poll_s)
            except (LinkDown, ForwardDbError) as e:
                self.stats.failures += 1
                message = str(e)
                if message != self.stats.last_error:
                    log.warning("forward %s: %s; retrying (the cursor stays, nothing is lost)",
                                self.sink.name, message)
                self.stats.last_error = message
                self.link.close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    def _hold_lease(self) -> bool:
        now = self.clock()
        if self.stats.holding_lease and now < self._lease_renew_at:
            return True
        ttl_ms = int(self.lease_ttl_s * 1000)
        held = self.db.acquire_lease(self.sink.name, self.holder, self._now_ms(), ttl_ms)
        if not held:  # a holder of this host that died need not be waited for until its lease expires
            other = self.db.lease_holder(self.sink.name)
            if other is not None and holder_is_dead(other):
                held = self.db.take_over(self.sink.name, other, self.holder, self._now_ms(), ttl_ms)
                log.info("forward %s: took over the lease of %s (process gone)", self.sink.name, other)
        if held and not self.stats.holding_lease:  # (re)gained: another holder may have moved the cursors
            start = self.sink.start
            self._positions = {f.name: self.db.load_cursor(self.sink.name, f.name, start, self._now_ms())
                               for f in self.feeds}
            log.info("forward %s: holding the lease as %s", self.sink.name, self.holder)
        self.stats.holding_lease = held
        self._lease_renew_at = now + self.lease_ttl_s / 3
        return held

    def round(self) -> bool | None:
        """One chunk per feed; True if anything was forwarded, None if stopped meanwhile."""
        moved = False
        for feed in self.feeds:
            if self._stop.is_set():
                break
            items, position = feed.fetch(self.db, self._positions[feed.name], self.sink.chunk_readings)
            if not items:
                continue
            messages = self._session_messages(feed.nodes(items)) + feed.messages(self.layout, items)
            if not self.link.publish_all(messages, self._abort):
                return None
            if not self.db.commit_cursor(self.sink.name, feed.name, position, self.holder, self._now_ms()):
                self.stats.holding_lease = False  # taken over: the new holder resends from its cursor
                raise LinkDown("lost the lease to another forwarder")
            self._positions[feed.name] = position
            self.stats.readings += len(items)
            self.stats.messages += len(messages)
            self.stats.by_feed[feed.name] = self.stats.by_feed.get(feed.name, 0) + len(items)
            moved = True
        self.stats.rounds += 1
        return moved

    def _session_messages(self, nodes: list[str]) -> list[Message]:
        """Device connects (once per MQTT session) and attributes when a node's health changed."""
        out = self.layout.connect_messages([n for n in nodes if n not in self._sent_devices])
        self._sent_devices.update(nodes)
        for node_id, health in self.db.health(nodes).items():
            if health and self._sent_health.get(node_id) != health:
                out += self.layout.attribute_messages(node_id, health)
                self._sent_health[node_id] = health
        return out


def start_forwarders(store: Any, sinks: list[SinkConfig], **kwargs: Any) -> list[Forwarder]:
    """One started `Forwarder` per sink, each on its own database connection."""
    forwarders = [Forwarder(sink, ForwardDb.for_store(store), **kwargs) for sink in sinks]
    for f in forwarders:
        f.start()
    return forwarders
