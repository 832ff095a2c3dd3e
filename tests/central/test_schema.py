"""central/schema_v1.json agrees with what node.protocol writes and accepts."""

from __future__ import annotations

import copy
import gzip
import json

import pytest

from central.reads import load_schema
from node.protocol import ProtocolError, decode_document
from tests.central.helpers import body_of, make_batch


def objects(schema: dict, doc: object, path: str = ""):
    """(path, schema, document value) for every object schema that has a document value."""
    if "$ref" in schema:
        schema = load_schema()["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "object" and isinstance(doc, dict):
        yield path, schema, doc
        for k, sub in schema.get("properties", {}).items():
            if k in doc:
                yield from objects(sub, doc[k], f"{path}.{k}" if path else k)
    elif schema.get("type") == "array" and isinstance(doc, list) and doc and isinstance(schema.get("items"),
                                                                                          dict):
        yield from objects(schema["items"], doc[0], f"{path}[0]")


def sample_doc() -> dict:
    doc = json.loads(gzip.decompress(body_of(make_batch(range(9)))))
    doc["gaps"] = [{"epoch": 1, "first_seq": 100, "last_seq": 109, "count": 10, "reason": "evicted_age",
                    "first_wall_ms": None, "last_wall_ms": 5}]
    doc["incidents"] = [{"id": 1, "wall_ms": 5, "kind": "disk_full", "detail": "ENOSPC", "count": 2}]
    doc["channels"][0]["f"] = [3, 256]
    doc["channels"][0]["x"] = []
    return doc


def test_schema_lists_every_key_the_encoder_writes():
    found = list(objects(load_schema(), sample_doc()))
    assert {p for p, _, _ in found} >= {"", "stamps", "channels[0]", "gaps[0]", "incidents[0]", "health"}
    for path, schema, value in found:
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(schema["properties"]), path


def test_required_keys_match_the_decoder():
    doc = sample_doc()
    decode_document(copy.deepcopy(doc))
    for path, schema, _ in objects(load_schema(), doc):
        for key in schema.get("required", []):
            broken = copy.deepcopy(doc)
            target = broken
            for part in filter(None, path.replace("[0]", ".0").split(".")):
                target = target[int(part)] if part.isdigit() else target[part]
            del target[key]
            with pytest.raises(ProtocolError) as e:
                decode_document(broken)
            assert e.value.field == (f"{path}.{key}" if path else key)
        if schema.get("additionalProperties") is False:  # unknown keys are refused too
            broken = copy.deepcopy(doc)
            target = broken
            for part in filter(None, path.replace("[0]", ".0").split(".")):
                target = target[int(part)] if part.isdigit() else target[part]
            target["unexpected"] = 1
            with pytest.raises(ProtocolError, match="unknown key"):
                decode_document(broken)
