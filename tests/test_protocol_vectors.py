"""docs/protocol-vectors.json against the code, and against the rules of docs/protocol.md computed
here with hashlib/hmac alone (what a client written from the docs would do). The receiver's side:
tests/central/test_vectors_http.py."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json

import pytest

from node import protocol
from tests.conftest import ROOT

VECTORS = json.loads((ROOT / "docs" / "protocol-vectors.json").read_text("utf-8"))
KEY = bytes.fromhex(VECTORS["key_hex"])


def test_the_key_is_the_32_bytes_the_hex_decodes_to():
    assert len(KEY) == 32 and protocol.parse_key(VECTORS["key_hex"] + "\n") == KEY


@pytest.mark.parametrize("vector", VECTORS["signing"], ids=[v["name"] for v in VECTORS["signing"]])
def test_signing_vectors(vector):
    body = bytes.fromhex(vector["body_hex"])
    assert hashlib.sha256(body).hexdigest() == vector["body_sha256"]  # the bytes as sent: the gzip body
    documented = "\n".join(["streetnode-v1", vector["method"], vector["path"], vector["timestamp"],
                            vector["node_id"], vector["body_sha256"]])
    assert documented == vector["string_to_sign"]
    by_hand = hmac.new(KEY, documented.encode("utf-8"), hashlib.sha256).hexdigest()
    assert by_hand == vector["signature"]
    ts, method, path, node = int(vector["timestamp"]), vector["method"], vector["path"], vector["node_id"]
    assert protocol.string_to_sign(method, path, ts, node, body).decode() == documented
    headers = protocol.sign_request(KEY, method, path, body, ts, node_id=node)
    assert headers == {"X-Streetnode-Node": vector["node_id"], "X-Streetnode-Timestamp": vector["timestamp"],
                       "X-Streetnode-Signature": vector["signature"]}
    assert protocol.verify_signature(KEY, vector["method"], vector["path"], body, ts, vector["signature"],
                                     node_id=vector["node_id"])


def test_receipt_vector():
    r = VECTORS["receipt"]
    body = r["response_body"].encode("utf-8")
    assert hashlib.sha256(body).hexdigest() == r["response_sha256"]
    assert r["message"] == f"streetnode-v1-receipt\n{r['request_signature']}\n{r['response_sha256']}"
    assert hmac.new(KEY, r["message"].encode(), hashlib.sha256).hexdigest() == r["receipt"]
    assert protocol.sign_receipt(KEY, r["request_signature"], body) == r["receipt"]
    assert protocol.verify_receipt(KEY, r["request_signature"], body, r["receipt"])


def test_the_document_decodes_to_the_listed_readings():
    body = bytes.fromhex(VECTORS["signing"][0]["body_hex"])
    assert json.loads(gzip.decompress(body)) == VECTORS["document"]
    assert VECTORS["readings_fields"] == list(protocol.ROW_FIELDS)
    for batch in (protocol.decode_body(body, max_decompressed=1 << 20),
                  protocol.decode_document(VECTORS["document"])):
        assert [list(row) for row in batch.rows()] == VECTORS["readings"]
        assert (batch.node_id, batch.epoch, batch.batch_id) == ("pole-17", 4, 42)
        assert batch.health == VECTORS["document"]["health"]


def test_the_decoding_rules_by_hand():
    """Delta columns, run-length columns, value = n / 10**dec, x exceptions: docs/protocol.md."""
    doc = VECTORS["document"]

    def undelta(items):
        out, total = [], 0
        for d in items:
            total += d
            out.append(total)
        return out

    def unrle(runs):
        return [v for n, v in zip(runs[::2], runs[1::2], strict=True) for _ in range(n)]

    walls, offs = undelta(doc["stamps"]["wall"]), undelta(doc["stamps"]["off"])
    boots = [doc["boots"][i] for i in unrle(doc["stamps"]["boot"])]
    rows = []
    for ch in doc["channels"]:
        seqs, stamps = undelta(ch["s"]), undelta(ch["t"])
        exact = {i: v for i, v in ch.get("x", [])}
        flags = unrle(ch["f"]) if "f" in ch else [0] * len(seqs)
        total, values = 0, []
        for i, d in enumerate(ch["v"]):
            if d is None:
                values.append(exact.get(i))
                continue
            total += d
            values.append(total / 10 ** ch["dec"])
        for seq, t, value, flag in zip(seqs, stamps, values, flags, strict=True):
            rows.append([seq, ch["name"], value, flag, walls[t], walls[t] - offs[t], boots[t]])
    assert sorted(rows, key=lambda r: r[0]) == VECTORS["readings"]
