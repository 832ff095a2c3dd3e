"""Alerts fixtures: a SQLite central with nodes, an engine over it, a webhook receiver of our own."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading

import pytest

from central.alerts.config import parse_alerts
from central.alerts.db import AlertsDb
from central.alerts.engine import AlertEngine
from central.store import open_store
from node.model import Reading
from node.protocol import IngestBatch
from tests.central.conftest import pg_url  # noqa: F401 (a fixture)
from tests.support.posthook import PostHook

SECRET = b"0123456789abcdef-webhook-secret"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """One contract, both backends: SQLite on tmp_path, a fresh schema on the local PostgreSQL."""
    sqlite = f"sqlite:///{tmp_path / 'c.db'}"
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else sqlite
    st = open_store(url)
    for node in ("pole-1", "pole-2", "pole-3"):
        st.add_node(node, bytes(32), 0)
    yield st
    st.close()


def make_engine(store, doc: dict, clock=None) -> AlertEngine:
    kw = {"clock": clock} if clock is not None else {}
    return AlertEngine(parse_alerts(doc), AlertsDb.for_store(store), list_nodes=store.list_nodes, **kw)


def depth_batch(
    node: str,
    points: list[tuple[int, float]],
    *,
    channel: str = "flood.depth_cm",
    flags: int = 0,
    health: dict | None = None,
    sent_ms: int | None = None,
    seq0: int = 1,
) -> IngestBatch:
    readings = [Reading(seq0 + i, channel, value, flags, t, t, "boot") for i, (t, value) in enumerate(points)]
    sent = sent_ms if sent_ms is not None else max(t for t, _ in points)
    return IngestBatch(node, 1, sent, readings, health=health or {})


class Receiver:
    """A webhook receiver on loopback that checks each signature; ``up`` False answers 503."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.keys: list[str] = []
        self.bad_signatures = 0
        self.up = True
        self.arrived = threading.Condition()
        self._hook = PostHook(self._on_post)
        self.url = self._hook.url

    def _on_post(self, headers, body: bytes) -> int:
        ts = headers["X-Streetnode-Timestamp"]
        want = "sha256=" + hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not self.up:
            return 503
        if not hmac.compare_digest(want, headers["X-Streetnode-Signature"]):
            self.bad_signatures += 1
            return 401
        key = headers["X-Streetnode-Dedupe-Key"]
        with self.arrived:
            if key not in self.keys:  # the receiver's own dedupe, by the key we send
                self.keys.append(key)
                self.events.append(json.loads(body))
            self.arrived.notify_all()
        return 204

    def wait(self, count: int, timeout: float = 20.0) -> list[dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.events) >= count, timeout)
        return list(self.events)

    def close(self) -> None:
        self._hook.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "webhook.secret"
    p.write_bytes(SECRET)
    return p
