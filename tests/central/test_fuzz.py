"""Hypothesis fuzz of the receiver's bodies and headers: never a 5xx, nothing stored on rejection."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.server import serve_in_thread
from central.store import open_store
from node import protocol
from tests.central.helpers import KEY, NODE, body_of, make_batch, now_ms

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'central.db'}"
    store = open_store(db)
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store, max_body=64 * 1024, max_decompressed=256 * 1024)
    yield url, store
    stop()
    store.close()


def send(url: str, body: bytes, headers: dict[str, str], path: str = protocol.INGEST_PATH):
    return requests.post(url + path, data=body, headers=headers, timeout=30)


def signed_headers(body: bytes, path: str = protocol.INGEST_PATH) -> dict[str, str]:
    h = dict(protocol.BODY_HEADERS)
    h.update(protocol.sign_request(KEY, "POST", path, body, now_ms(), node_id=NODE))
    return h


def assert_rejected_cleanly(r: requests.Response, store, before: int) -> None:
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert 400 <= r.status_code < 500
        assert isinstance(r.json()["error"], str)
        assert store.count_readings() == before


@FUZZ
@given(body=st.binary(max_size=2048), gz=st.booleans())
def test_random_signed_bodies(server, body, gz):
    url, store = server
    before = store.count_readings()
    raw = gzip.compress(body) if gz else body
    assert_rejected_cleanly(send(url, raw, signed_headers(raw)), store, before)


@FUZZ
@given(data=st.data())
def test_mutated_signed_documents(server, data):
    """A valid document with one value anywhere replaced by arbitrary JSON, correctly signed."""
    url, store = server
    doc = json.loads(gzip.decompress(body_of(make_batch(range(9)))))
    node = doc
    while True:
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        k = data.draw(st.sampled_from(keys))
        child = node[k]
        if isinstance(child, dict | list) and child and data.draw(st.booleans()):
            node = child
            continue
        node[k] = data.draw(json_values)
        break
    raw = gzip.compress(json.dumps(doc).encode())
    before = store.count_readings()
    r = send(url, raw, signed_headers(raw))
    assert_rejected_cleanly(r, store, before)
    if r.status_code == 200:  # a harmless mutation: whatever was stored is counted
        assert store.count_readings() == before + r.json()["stored"]


header_names = st.sampled_from([protocol.HEADER_NODE, protocol.HEADER_TIMESTAMP, protocol.HEADER_SIGNATURE,
                                "Content-Type", "Content-Encoding", "Content-Length"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@FUZZ
@given(changes=st.dictionaries(header_names, st.none() | header_values, min_size=1, max_size=4),
       path=st.sampled_from([protocol.INGEST_PATH, protocol.PING_PATH]))
def test_fuzzed_headers(server, changes, path):
    url, store = server
    raw = body_of(make_batch(range(200_000, 200_009)))
    h = signed_headers(raw, path)
    for k, v in changes.items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v.strip()
    before = store.count_readings()
    try:
        r = send(url, raw, h, path)
    except requests.exceptions.RequestException:
        return  # e.g. a Content-Length the client itself cannot honour: nothing reached the server
    assert_rejected_cleanly(r, store, before)
