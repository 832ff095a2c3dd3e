"""Building signed requests for the receiver tests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import requests

from node import protocol
from node.model import Batch, Reading

KEY = bytes(range(1, 33))
NODE = "pole-1"
CHANNELS = ["weather.temperature_c", "weather.humidity_pct", "weather.pressure_hpa"]


def now_ms() -> int:
    return int(time.time() * 1000)


def make_batch(seqs, *, node: str = NODE, epoch: int = 1) -> Batch:
    readings = [Reading(s, CHANNELS[s % 3], round(20 + s * 0.01, 2), 0,
                        1_764_100_000_000 + (s // 3) * 10_000, 5_000 + (s // 3) * 10_000, "boot-a")
                for s in seqs]
    return Batch(7, node, epoch, readings)


def body_of(batch: Batch) -> bytes:
    return protocol.encode_batch(batch, health={"backlog_readings": 5, "firmware": "0.1.0"}, sent_ms=now_ms())


def post(base: str, body: bytes, *, key: bytes = KEY, node: str = NODE, ts: int | None = None,
         path: str = protocol.INGEST_PATH, headers: dict | None = None, sign_path: str | None = None,
         sign_body: bytes | None = None) -> requests.Response:
    ts = now_ms() if ts is None else ts
    h = dict(protocol.BODY_HEADERS)
    h.update(protocol.sign_request(key, "POST", sign_path or path,
                                   body if sign_body is None else sign_body, ts, node_id=node))
    h.update(headers or {})
    return requests.post(base + path, data=body, headers={k: v for k, v in h.items() if v is not None},
                         timeout=30)


def ingest_counts(r: requests.Response) -> dict:
    """The four counters of a 200 ingest answer (the other keys are checked where they matter)."""
    assert r.status_code == 200, r.text
    return {k: r.json()[k] for k in ("stored", "duplicates", "gaps", "incidents")}


def read_token(store, name: str = "tests", role: str = "read") -> dict[str, str]:
    """Headers with a new API token of ``role`` for the read API."""
    from central.accounts import Accounts

    return {"Authorization": f"Bearer {Accounts(store).add_token(name, role)}"}


def get(url: str, auth: dict[str, str], **kw) -> requests.Response:
    return requests.get(url, headers={**auth, **kw.pop("headers", {})}, timeout=kw.pop("timeout", 10), **kw)


@contextlib.contextmanager
def write_transaction_held(store, sql: str, params: tuple) -> Iterator[None]:
    """A write transaction (``sql``, ``params`` executed in it) held open on another thread, as a
    long ingest would, for the length of the ``with`` block; committed when it ends."""
    held, release = threading.Event(), threading.Event()

    def hold(tx):
        tx.execute(sql, params)
        held.set()
        release.wait(20)

    writer = threading.Thread(target=store.transaction, args=(hold,), kwargs={"write": True})
    writer.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        writer.join(20)


def make_tls_cert(directory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI); returns (cert path, key path)."""
    import subprocess

    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key
