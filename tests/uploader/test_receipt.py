"""Contract 1: the receipt of an answer binds the node key, the request signature and the body."""

from __future__ import annotations

import hashlib
import hmac

from node import protocol

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
