"""The receiver answers docs/protocol-vectors.json exactly as documented, on both stores: the
vector's bytes and headers are accepted, its answer is byte for byte the receipt vector's response
(so the receipt header equals the vector's), the readings stored are the listed ones, and each
refused variant is refused as listed."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from central.server import serve_in_thread
from node import protocol
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text("utf-8"))
KEY = bytes.fromhex(VECTORS["key_hex"])
INGEST, PING = VECTORS["signing"]
TS = int(INGEST["timestamp"])


@pytest.fixture
def central(store):
    store.add_node(INGEST["node_id"], KEY, TS - 1000)
    url, stop = serve_in_thread(store, clock=lambda: TS / 1000)  # the vector's time is "now"
    yield url, store
    stop()


def headers_of(vector: dict, **override: str) -> dict[str, str]:
    h = {"X-Streetnode-Node": vector["node_id"], "X-Streetnode-Timestamp": vector["timestamp"],
         "X-Streetnode-Signature": vector["signature"]}
    if vector is INGEST:
        h.update(protocol.BODY_HEADERS)
    h.update(override)
    return h


def test_the_vectors_are_accepted_byte_for_byte(central):
    url, store = central
    body = bytes.fromhex(INGEST["body_hex"])
    r = requests.post(url + INGEST["path"], data=body, headers=headers_of(INGEST), timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == VECTORS["receipt"]["response_body"].encode()
    assert r.headers["X-Streetnode-Receipt"] == VECTORS["receipt"]["receipt"]
    stored = store.readings(INGEST["node_id"])
    assert sorted([s.seq, s.channel, s.value, s.flags, s.wall_ms, s.boot_ms, s.boot_id] for s in stored) == \
        VECTORS["readings"]
    r = requests.post(url + PING["path"], data=b"", headers=headers_of(PING), timeout=10)
    assert r.status_code == 200 and r.json()["node"] == PING["node_id"], r.text


@pytest.mark.parametrize("case", VECTORS["refused"], ids=[c["name"] for c in VECTORS["refused"]])
def test_the_refused_variants(central, case):
    url, store = central
    body = bytes.fromhex(INGEST["body_hex"])
    if "header" in case:
        headers = headers_of(INGEST, **{case["header"]: case["value"]})
    else:
        key = VECTORS["key_hex"].encode() if case.get("key_text_as_bytes") else KEY
        signed = gzip.decompress(body) if case.get("sign_json") else body
        headers = {**protocol.BODY_HEADERS, **protocol.sign_request(key, "POST", INGEST["path"], signed, TS,
                                                                    node_id=INGEST["node_id"])}
    r = requests.post(url + INGEST["path"], data=body, headers=headers, timeout=10)
    assert (r.status_code, r.json()["error"]) == (case["status"], case["error"]), r.text
    assert r.json().get("field") == case.get("field")
    assert store.count_readings(INGEST["node_id"]) == 0
