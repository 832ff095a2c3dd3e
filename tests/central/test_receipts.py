"""Contract 1 (brief): the central signs every answer to a request whose signature verified, and
only those, so a node can tell the central's answer from a proxy's or a captive portal's."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from central.server import serve_in_thread
from node import protocol
from tests.central.helpers import KEY, NODE, body_of, make_batch, now_ms, post


@pytest.fixture
def central(store):
    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(store, max_body=64 * 1024)
    yield url, store
    stop()


def signed_by_central(r: requests.Response) -> bool:
    sig = r.request.headers[protocol.HEADER_SIGNATURE]
    return protocol.verify_receipt(KEY, sig, r.content, r.headers.get(protocol.HEADER_RECEIPT))


def test_verified_requests_get_a_receipt_whatever_the_answer(central):
    url, _ = central
    body = body_of(make_batch(range(5)))
    ts = now_ms()
    ok = post(url, body, ts=ts)
    assert ok.status_code == 200 and signed_by_central(ok)
    replay = post(url, body, ts=ts)
    assert (replay.status_code, replay.json()["error"]) == (401, "replay") and signed_by_central(replay)
    doc = json.loads(gzip.decompress(body))
    doc["channels"][0]["v"][0] = "warm"
    schema = post(url, gzip.compress(json.dumps(doc).encode()))
    assert (schema.status_code, schema.json()["error"]) == (422, "schema") and signed_by_central(schema)
    stale = post(url, body, ts=now_ms() - 3_600_000)
    assert stale.status_code == 401 and signed_by_central(stale)
    ping = post(url, b"", path=protocol.PING_PATH, headers={"Content-Type": None, "Content-Encoding": None})
    assert ping.status_code == 200 and signed_by_central(ping)


def test_a_receipt_binds_the_body_and_the_request(central):
    url, _ = central
    r = post(url, body_of(make_batch(range(5))))
    receipt = r.headers[protocol.HEADER_RECEIPT]
    sig = r.request.headers[protocol.HEADER_SIGNATURE]
    forged = r.content.replace(b'"stored":5', b'"stored":6')
    assert forged != r.content and not protocol.verify_receipt(KEY, sig, forged, receipt)
    assert not protocol.verify_receipt(KEY, "0" * 64, r.content, receipt)


@pytest.mark.parametrize("case", ["unknown_node", "wrong_key", "no_signature", "bad_content_type"])
def test_unverified_requests_get_no_receipt(central, case):
    url, _ = central
    body = body_of(make_batch(range(3)))
    kw = {"unknown_node": {"node": "ghost"}, "wrong_key": {"key": bytes(32)},
          "no_signature": {"headers": {protocol.HEADER_SIGNATURE: None}},
          "bad_content_type": {"headers": {"Content-Type": "text/html"}}}[case]
    r = post(url, body, **kw)
    assert 400 <= r.status_code < 500
    assert protocol.HEADER_RECEIPT not in r.headers


def test_a_500_after_verification_is_signed_too(store):
    from tests.central.test_app import BrokenStore

    store.add_node(NODE, KEY, now_ms())
    url, stop = serve_in_thread(BrokenStore(store))
    try:
        r = post(url, body_of(make_batch(range(3))))
    finally:
        stop()
    assert r.status_code == 500 and signed_by_central(r)
