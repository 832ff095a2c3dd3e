"""Delivery of alert transitions, at least once and in order, from the queue in the database.

One worker thread per sink takes the oldest pending delivery of its sink (head of line: a later
transition never overtakes an earlier one), sends it, and marks it done; a failure keeps it pending
with the next attempt after a backoff (``backoff_initial`` doubling to ``backoff_max``, forever),
so a receiver that is down for ten minutes gets every transition, in order, within
``backoff_max`` of its return — and a central restart loses nothing (the queue is a table). The
worker holds the sink's lease (the forwarder's ``forward_leases``, as ``alerts:<sink>``) so that
of several ``serve`` processes one delivers.

* Webhook: ``POST`` of the event JSON with ``X-Streetnode-Dedupe-Key`` (stable per transition:
  a receiver drops what it has seen), ``X-Streetnode-Timestamp`` and ``X-Streetnode-Signature:
  sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``. 2xx = delivered; anything else,
  or no answer within ``timeout``, is retried.
* MQTT: the forwarder's `MqttLink` (same config keys, TLS, credentials): the event at QoS 1 to
  ``<prefix>/alerts/<node>/events`` and the node's open alerts, retained, to
  ``<prefix>/alerts/<node>/state``; delivered once every PUBACK is in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from central.alerts.config import AlertsConfig, WebhookSink
from central.alerts.db import AlertsDb
from central.forward.config import SinkConfig
from central.forward.db import ForwardDbError
from central.forward.forwarder import default_holder
from central.forward.layouts import Message
from central.forward.mqtt import LinkDown, MqttLink

log = logging.getLogger("streetnode.central.alerts")
LEASE_TTL_S = 30.0


class DeliveryFailed(Exception):
    pass


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The webhook signature header value for ``body`` sent at ``timestamp`` (ms, as text)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, sink: WebhookSink, clock: Callable[[], float] = time.time) -> None:
        self.sink, self.clock = sink, clock

    def send(self, payload: str, stop: threading.Event) -> None:
        body = payload.encode()
        event = json.loads(payload)
        timestamp = str(int(self.clock() * 1000))
        request = urllib.request.Request(
            self.sink.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "streetnode-central alerts",
                "X-Streetnode-Event": event["transition"],
                "X-Streetnode-Dedupe-Key": event["dedupe_key"],
                "X-Streetnode-Timestamp": timestamp,
                "X-Streetnode-Signature": sign(self.sink.secret, timestamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.sink.timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as e:
            raise DeliveryFailed(f"HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise DeliveryFailed(str(getattr(e, "reason", e))) from None

    def close(self) -> None:
        return None


class MqttSender:
    def __init__(self, sink: SinkConfig) -> None:
        self.link = MqttLink(sink, ack_timeout_s=10.0)

    def prepare(self) -> None:
        """Connect ahead of the first transition (its latency then holds no TCP/MQTT handshake)."""
        try:
            self.link.connect(timeout_s=5.0)
        except LinkDown as e:
            log.warning("alerts %s: broker not reachable yet: %s", self.link.sink.name, e)

    def send(self, payload: str, stop: threading.Event) -> None:
        messages = [
            Message(m["topic"], m["payload"].encode(), bool(m["retain"])) for m in json.loads(payload)
        ]
        try:
            if not self.link.connected:
                self.link.connect(timeout_s=5.0)
            if not self.link.publish_all(messages, stop):
                raise DeliveryFailed("stopped")
        except LinkDown as e:
            self.link.close()
            raise DeliveryFailed(str(e)) from None

    def close(self) -> None:
        self.link.close()


class DeliveryWorker:
    def __init__(
        self,
        name: str,
        sender: Any,
        db: AlertsDb,
        *,
        backoff_initial_s: float,
        backoff_max_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self.sender, self.db, self.clock = name, sender, db, clock
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.holder = default_holder()
        self.delivered = 0
        self.failures = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease_until = 0.0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"alerts-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sender.close()
        try:
            self.db.release_lease(f"alerts:{self.name}", self.holder)
        except ForwardDbError:
            pass
        self.db.close()

    def _wait(self, seconds: float) -> None:
        self._wake.wait(max(0.0, seconds))
        self._wake.clear()

    def _hold_lease(self) -> bool:
        now = self.clock()
        if now < self._lease_until:
            return True
        held = self.db.acquire_lease(
            f"alerts:{self.name}", self.holder, int(now * 1000), int(LEASE_TTL_S * 1000)
        )
        self._lease_until = now + LEASE_TTL_S / 3 if held else 0.0
        return held

    def run(self) -> None:
        prepare = getattr(self.sender, "prepare", None)
        if prepare is not None:
            prepare()
        while not self._stop.is_set():
            try:
                if not self._hold_lease():
                    self._wait(LEASE_TTL_S / 3)
                    continue
                item = self.db.next_delivery(self.name)
                if item is None:
                    self._wait(1.0)
                    continue
                delivery_id, payload, attempts, next_ms = item
                due_in = next_ms / 1000 - self.clock()
                if due_in > 0:
                    self._wait(due_in)
                    continue
                self._attempt(delivery_id, payload, attempts)
            except ForwardDbError as e:
                log.warning("alerts %s: database: %s; retrying", self.name, e)
                self._wait(1.0)

    def _attempt(self, delivery_id: int, payload: str, attempts: int) -> None:
        try:
            self.sender.send(payload, self._stop)
        except DeliveryFailed as e:
            self.failures += 1
            backoff = min(self.backoff_initial_s * 2**attempts, self.backoff_max_s)
            if str(e) != self.last_error:
                log.warning(
                    "alerts %s: delivery failed: %s; retrying in %.1f s (kept in the queue)",
                    self.name,
                    e,
                    backoff,
                )
            self.last_error = str(e)
            self.db.failed(delivery_id, int((self.clock() + backoff) * 1000), str(e))
            return
        self.db.delivered(delivery_id, int(self.clock() * 1000))
        self.delivered += 1
        self.last_error = None


def start_delivery(config: AlertsConfig, make_db: Callable[[], AlertsDb]) -> list[DeliveryWorker]:
    """One started worker per sink, each on its own database connection."""
    senders: list[tuple[str, Any]] = [(hook.name, WebhookSender(hook)) for hook in config.webhooks]
    senders += [(sink.name, MqttSender(sink)) for sink in config.mqtt]
    workers = [
        DeliveryWorker(
            name,
            sender,
            make_db(),
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
        )
        for name, sender in senders
    ]
    for worker in workers:
        worker.start()
    return workers
