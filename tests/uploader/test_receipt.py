"""Contract 1: the receipt of an answer binds the node key, the request signature and the body."""

from __future__ import annotations

import hashlib
import hmac

from node import protocol
from tests.uploader.conftest import NODE

KEY = bytes(range(32))
SIG = "ab" * 32
BODY = b'{"stored":1,"duplicates":0,"gaps":0,"incidents":0,"readings":1,"batch":7,"epoch":1}'


def test_receipt_is_the_contract_hmac():
    text = b"streetnode-v1-receipt\n" + SIG.encode() + b"\n" + hashlib.sha256(BODY).hexdigest().encode()
    assert protocol.sign_receipt(KEY, SIG, BODY) == hmac.new(KEY, text, hashlib.sha256).hexdigest()


def test_receipt_verifies_only_for_that_key_request_and_body():
    receipt = protocol.sign_receipt(KEY, SIG, BODY)
    assert protocol.verify_receipt(KEY, SIG, BODY, receipt)
    assert not protocol.verify_receipt(b"\x01" * 32, SIG, BODY, receipt)
    assert not protocol.verify_receipt(KEY, "cd" * 32, BODY, receipt)
    assert not protocol.verify_receipt(KEY, SIG, BODY + b" ", receipt)
    assert not protocol.verify_receipt(KEY, SIG, BODY, None)
    assert not protocol.verify_receipt(KEY, SIG, BODY, "")
    assert not protocol.verify_receipt(KEY, SIG, BODY, "not hex")


def _post(central, body, *, key=None, ts=None, path=protocol.INGEST_PATH):
    import time

    import requests

    ts = ts if ts is not None else int(time.time() * 1000)
    headers = dict(protocol.BODY_HEADERS)
    headers.update(protocol.sign_request(key or central.key, "POST", path, body, ts, node_id=NODE))
    r = requests.post(central.url + path, data=body, headers=headers, timeout=10)
    return r, headers[protocol.HEADER_SIGNATURE]


def _body(n=3, batch_id=7):
    import time

    from node.model import Batch, Reading

    now = int(time.time() * 1000)
    readings = [Reading(i, "weather.temperature_c", 20.0 + i, 0, now, 1000 + i, "boot")
                for i in range(1, n + 1)]
    return protocol.encode_batch(Batch(batch_id, NODE, 1, readings), health={}, sent_ms=now)


def test_the_real_central_signs_what_it_answers_to_a_verified_request(central):
    r, sig = _post(central, _body())
    assert r.status_code == 200
    assert protocol.verify_receipt(central.key, sig, r.content, r.headers.get(protocol.HEADER_RECEIPT))
    assert r.json()["readings"] == 3 and r.json()["batch"] == 7 and r.json()["epoch"] == 1  # contract 2
    r, sig = _post(central, b"\x1f\x8b not gzip")  # a refusal after the signature verified: signed too
    assert r.status_code == 400
    assert protocol.verify_receipt(central.key, sig, r.content, r.headers[protocol.HEADER_RECEIPT])
    r, sig = _post(central, _body(), ts=1)  # stale timestamp: the signature verified, so signed
    assert r.status_code == 401 and r.json()["error"] == "stale_timestamp"
    assert protocol.verify_receipt(central.key, sig, r.content, r.headers[protocol.HEADER_RECEIPT])
    r, sig = _post(central, b"", path=protocol.PING_PATH)
    assert r.status_code == 200
    assert protocol.verify_receipt(central.key, sig, r.content, r.headers[protocol.HEADER_RECEIPT])


def test_a_request_that_did_not_verify_gets_no_receipt(central):
    r, _ = _post(central, _body(), key=b"\x07" * 32)
    assert r.status_code == 401 and protocol.HEADER_RECEIPT not in r.headers
