"""node/protocol.py: exact round trip, validation naming the field, signing."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import protocol
from node.model import Batch, Gap, Incident, Reading
from node.protocol import ProtocolError, decode_body, encode_batch, sign_request, verify_signature

MAX = 1 << 24
HEALTH = {"backlog_readings": 12, "oldest_reading_age_s": 30.5, "firmware": "0.1.0"}


def cycle_batch(cycles: int = 20, channels: int = 5, *, seq0: int = 100) -> Batch:
    names = ["weather.temperature_c", "weather.pressure_hpa", "air.pm2_5_ugm3", "flood.depth_cm",
             "rain.rain_mm", "health.uptime_s"][:channels]
    readings, seq = [], seq0
    for c in range(cycles):
        wall, boot = 1_764_100_000_000 + c * 10_000, 5_000 + c * 10_000
        for i, name in enumerate(names):
            value = None if (c == 3 and i == 0) else round(20 + c * 0.37 + i, 2)
            flags = 8 if value is None else (256 if c < 2 else 0)
            readings.append(Reading(seq, name, value, flags, wall, boot, "boot-a" if c < 10 else "boot-b"))
            seq += 1
    gaps = [Gap(4, 10, 19, 10, 1_764_000_000_000, None, "evicted_size")]
    incidents = [Incident(7, 1_764_100_000_000, "sensor_fault", "bme280 at 0x76: EIO", 3)]
    return Batch(42, "pole-17", 4, readings, gaps, incidents)


def unzip_doc(body: bytes) -> dict:
    return json.loads(gzip.decompress(body))


def rezip(doc: object) -> bytes:
    return gzip.compress(json.dumps(doc).encode())


def test_round_trip_reproduces_every_field():
    batch = cycle_batch()
    out = decode_body(encode_batch(batch, health=HEALTH, sent_ms=123), max_decompressed=MAX)
    assert out.readings == batch.readings
    assert out.gaps == batch.gaps and out.incidents == batch.incidents
    assert (out.node_id, out.epoch, out.sent_ms, out.batch_id) == ("pole-17", 4, 123, 42)
    assert out.health == HEALTH
    assert out.units["weather.temperature_c"] == "°C"


def test_layout_is_columnar_with_shared_stamps():
    doc = unzip_doc(encode_batch(cycle_batch(cycles=20, channels=5), health={}, sent_ms=0))
    assert doc["v"] == 1
    assert doc["boots"] == ["boot-a", "boot-b"]
    assert len(doc["stamps"]["wall"]) == 20  # one stamp per cycle, not per reading
    assert doc["stamps"]["boot"] == [10, 0, 10, 1]
    ch = doc["channels"][0]
    assert ch["name"] == "weather.temperature_c" and ch["dec"] == 2
    assert ch["s"][1:] == [5] * 19 and ch["t"] == [0] + [1] * 19
    assert ch["v"][3] is None
    assert doc["channels"][2].get("f") == [2, 256, 18, 0]


def test_value_not_on_resolution_travels_exactly():
    r = [Reading(1, "weather.temperature_c", 21.123456789, 0, 10, 5, "b"),
         Reading(2, "weather.temperature_c", -0.0, 0, 10, 5, "b"),
         Reading(3, "weather.temperature_c", 1e300, 0, 10, 5, "b"),
         Reading(4, "x.unknown", 0.1 + 0.2, 0, 10, 5, "b")]
    out = decode_body(encode_batch(Batch(1, "n", 0, r), health={}, sent_ms=0), max_decompressed=MAX)
    assert out.readings == r
    assert str(out.readings[1].value) == "-0.0"


readings_st = st.lists(
    st.tuples(
        st.sampled_from(["a.temperature_c", "a.pm2_5_ugm3", "b.rain_mm", "c.load_1m", "d.odd"]),
        st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                  st.integers(-10**6, 10**6).map(lambda n: n / 100)),
        st.integers(0, 2**16),
        st.integers(0, 2**45), st.integers(0, 2**40),
        st.sampled_from(["b1", "b2", "b3"]),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=readings_st, seq0=st.integers(0, 2**40), epoch=st.integers(0, 2**31))
def test_round_trip_property(rows, seq0, epoch):
    readings = [Reading(seq0 + i * 3, ch, v, f, w, b, boot) for i, (ch, v, f, w, b, boot) in enumerate(rows)]
    batch = Batch(1, "node-1", epoch, readings)
    out = decode_body(encode_batch(batch, health={}, sent_ms=1), max_decompressed=MAX)
    assert out.readings == readings
    for a, b in zip(out.readings, readings, strict=True):  # -0.0 vs 0.0 and int vs float
        assert repr(a.value) == repr(b.value)


def test_duplicate_seq_refused_by_encoder():
    r = Reading(1, "a.temperature_c", 1.0, 0, 1, 1, "b")
    with pytest.raises(ProtocolError):
        encode_batch(Batch(1, "n", 0, [r, r]), health={}, sent_ms=0)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.pop("node"), "node"),
    (lambda d: d.update(v=2), "v"),
    (lambda d: d.update(epoch="4"), "epoch"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["channels"][1].update(v=[1]), "channels[1].v"),
    (lambda d: d["channels"][0]["t"].__setitem__(1, 1000), "channels[0].t[1]"),
    (lambda d: d["channels"][0].update(f=[1, 0]), "channels[0].f"),
    (lambda d: d["channels"][0]["v"].__setitem__(0, 1.5), "channels[0].v[0]"),
    (lambda d: d["stamps"].update(boot=[20, 7]), "stamps.boot[1]"),
    (lambda d: d["channels"][1].update(name=d["channels"][0]["name"]), "channels[1].name"),
    (lambda d: d["gaps"][0].update(last_seq=1), "gaps[0].last_seq"),
    (lambda d: d["incidents"][0].pop("kind"), "incidents[0].kind"),
    (lambda d: d["health"].update(backlog_readings="many"), "health.backlog_readings"),
    (lambda d: d["health"].update(nested={"a": 1}), "health.nested"),
    (lambda d: d.update(node="../etc"), "node"),
])
def test_schema_violations_name_the_field(mutate, field):
    doc = unzip_doc(encode_batch(cycle_batch(), health=HEALTH, sent_ms=0))
    mutate(doc)
    with pytest.raises(ProtocolError) as e:
        decode_body(rezip(doc), max_decompressed=MAX)
    assert e.value.field == field and e.value.code == "schema"


def test_duplicate_seq_across_channels_rejected():
    doc = unzip_doc(encode_batch(cycle_batch(cycles=1, channels=2), health={}, sent_ms=0))
    doc["channels"][1]["s"] = doc["channels"][0]["s"]
    with pytest.raises(ProtocolError, match="appears twice"):
        decode_body(rezip(doc), max_decompressed=MAX)


def test_gzip_and_json_errors():
    with pytest.raises(ProtocolError) as e:
        decode_body(b"not gzip", max_decompressed=MAX)
    assert e.value.code == "bad_gzip"
    good = encode_batch(cycle_batch(), health={}, sent_ms=0)
    for bad in (good[:-5], good + b"junk"):
        with pytest.raises(ProtocolError) as e:
            decode_body(bad, max_decompressed=MAX)
        assert e.value.code == "bad_gzip"
    for text in (b"{", b"\xff\xfe", b"[1, NaN]", b"[]"):
        with pytest.raises(ProtocolError) as e:
            decode_body(gzip.compress(text), max_decompressed=MAX)
        assert e.value.code == ("schema" if text == b"[]" else "bad_json")


def test_gzip_bomb_stops_at_the_cap():
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))
    assert len(bomb) < 100_000
    with pytest.raises(ProtocolError) as e:
        decode_body(bomb, max_decompressed=1024 * 1024)
    assert e.value.code == "too_large"


def test_sign_and_verify():
    key = bytes(range(32))
    body = b"payload"
    h = sign_request(key, "POST", "/v1/ingest", body, 1_764_100_000_123, node_id="pole-17")
    assert h[protocol.HEADER_NODE] == "pole-17" and h[protocol.HEADER_TIMESTAMP] == "1764100000123"
    sig = h[protocol.HEADER_SIGNATURE]
    assert verify_signature(key, "POST", "/v1/ingest", body, 1_764_100_000_123, sig, node_id="pole-17")
    assert not verify_signature(key, "POST", "/v1/ingest", b"payloaD", 1_764_100_000_123, sig,
                                node_id="pole-17")
    assert not verify_signature(key, "POST", "/v1/ping", body, 1_764_100_000_123, sig, node_id="pole-17")
    assert not verify_signature(key, "POST", "/v1/ingest", body, 1_764_100_000_124, sig, node_id="pole-17")
    assert not verify_signature(key, "POST", "/v1/ingest", body, 1_764_100_000_123, sig, node_id="pole-18")
    assert not verify_signature(bytes(32), "POST", "/v1/ingest", body, 1_764_100_000_123, sig,
                                node_id="pole-17")
    auth = protocol.parse_auth_headers({k.lower(): v for k, v in h.items()})
    assert (auth.node_id, auth.timestamp, auth.signature) == ("pole-17", 1_764_100_000_123, sig)


@pytest.mark.parametrize(("headers", "field"), [
    ({}, protocol.HEADER_NODE),
    ({protocol.HEADER_NODE: "n", protocol.HEADER_TIMESTAMP: "-5", protocol.HEADER_SIGNATURE: "0" * 64},
     protocol.HEADER_TIMESTAMP),
    ({protocol.HEADER_NODE: "n", protocol.HEADER_TIMESTAMP: "5", protocol.HEADER_SIGNATURE: "xyz"},
     protocol.HEADER_SIGNATURE),
])
def test_bad_auth_headers(headers, field):
    with pytest.raises(ProtocolError) as e:
        protocol.parse_auth_headers(headers)
    assert e.value.field == field


def test_timestamp_window_and_server_time():
    assert protocol.timestamp_fresh(1_000_000, 1_000_000 + 300_000)
    assert not protocol.timestamp_fresh(1_000_000, 1_000_000 + 300_001)
    assert protocol.server_time_ms({}, {"server_time_ms": 77}) == 77
    assert protocol.server_time_ms({"x-streetnode-server-time": "1234"}) == 1234
    assert protocol.server_time_ms({"Date": "Wed, 25 Nov 2026 20:00:00 GMT"}) == 1_795_636_800_000
    assert protocol.server_time_ms({}) is None


def test_keys():
    key = bytes(range(32))
    assert protocol.parse_key(protocol.format_key(key) + "\n") == key
    with pytest.raises(ValueError, match="64 hex digits"):
        protocol.parse_key("secret")


def test_gunzip_limited_accepts_exact_cap():
    data = b"x" * 1000
    assert protocol.gunzip_limited(gzip.compress(data), 1000) == data
    raw = zlib.compress(data)  # zlib, not gzip framing
    with pytest.raises(ProtocolError):
        protocol.gunzip_limited(raw, 1000)


def test_negative_zero_and_odd_values_travel_exactly():
    vals = [-0.0, 0.0, 21.5, 21.123456789, 1e300, -5e-324]
    r = [Reading(i, "a.temperature_c", v, 0, 10, 5, "b") for i, v in enumerate(vals)]
    out = decode_body(encode_batch(Batch(1, "n", 0, r), health={}, sent_ms=0), max_decompressed=MAX)
    assert [repr(x.value) for x in out.readings] == [repr(v) for v in vals]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_by_both_ends(bad):
    """v1 values are finite (docs/protocol.md): the encoder names the reading, the decoder the field."""
    r = [Reading(0, "a.temperature_c", 1.0, 0, 10, 5, "b"), Reading(1, "a.temperature_c", bad, 0, 10, 5, "b")]
    with pytest.raises(ProtocolError) as e:
        encode_batch(Batch(1, "n", 0, r), health={}, sent_ms=0)
    assert e.value.field == "readings[seq=1]"
    doc = json.loads(gzip.decompress(encode_batch(Batch(1, "n", 0, r[:1]), health={}, sent_ms=0)))
    doc["channels"][0]["s"].append(1)
    doc["channels"][0]["t"].append(0)
    doc["channels"][0]["v"].append(None)
    doc["channels"][0]["x"] = [[1, repr(bad)]]  # how encoders before the finite rule sent them
    with pytest.raises(ProtocolError) as e:
        decode_body(gzip.compress(json.dumps(doc).encode()), max_decompressed=MAX)
    assert (e.value.code, e.value.field) == ("schema", "channels[0].x[0][1]")


def test_huge_values_stay_within_safe_integers():
    vals = [-9e15, 9e15, 1e12, -1e12, 4.5e15]
    for ch in ("a.rain_mm", "a.pm2_5_ugm3"):
        r = [Reading(i, ch, v, 0, 10, 5, "b") for i, v in enumerate(vals)]
        out = decode_body(encode_batch(Batch(1, "n", 0, r), health={}, sent_ms=0), max_decompressed=MAX)
        assert [x.value for x in out.readings] == vals


def test_receipt_signs_exactly_this_answer_to_this_request():
    key, sig = bytes(range(32)), "ab" * 32
    body = b'{"stored":3,"duplicates":0}'
    receipt = protocol.sign_receipt(key, sig, body)
    assert len(receipt) == 64 and protocol.verify_receipt(key, sig, body, receipt)
    # contract 1 (brief): HMAC-SHA256(key, "streetnode-v1-receipt\n" + sig + "\n" + hex(SHA-256(body)))
    import hashlib
    import hmac

    message = b"streetnode-v1-receipt\n" + sig.encode() + b"\n" + hashlib.sha256(body).hexdigest().encode()
    assert receipt == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert not protocol.verify_receipt(key, sig, body + b" ", receipt)  # another body (a proxy's page)
    assert not protocol.verify_receipt(key, "cd" * 32, body, receipt)  # the answer to another request
    assert not protocol.verify_receipt(bytes(32), sig, body, receipt)  # someone without the node's key
    for absent in (None, "", "zz", receipt.upper(), receipt + "\n00"):
        assert not protocol.verify_receipt(key, sig, body, absent)
    # a receipt can never be taken for a request signature (different first line)
    assert receipt != protocol.signature(key, "POST", "/v1/ingest", body, 1, node_id="x")


def test_quality_flags_of_node_and_drivers_agree():
    from drivers.quality import Quality as DriverQuality
    from drivers.quality import names
    from node.model import Quality, flag_names

    assert {q.name: q.value for q in Quality} == {q.name: q.value for q in DriverQuality}
    for flags in (0, 1, 8, 256 | 8, 0x70F, 1 << 20):
        assert flag_names(flags) == names(flags)


@pytest.mark.parametrize("text", ["pole-1\n", "pole-1\r", " pole-1", "p\u00f6le", "-pole", "a" * 65, ""])
def test_node_ids_are_fullmatched(text):
    assert not protocol.is_node_id(text)
    headers = sign_request(bytes(32), "POST", "/v1/ingest", b"", 1, node_id="pole-1")
    headers[protocol.HEADER_NODE] = text
    if text.strip() != "pole-1":  # header values are stripped, as HTTP servers do
        with pytest.raises(ProtocolError):
            protocol.parse_auth_headers(headers)
