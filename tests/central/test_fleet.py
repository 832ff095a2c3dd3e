"""Fleet configuration at the central: layers, versions, rollouts (store level, both backends), the
signed ``POST /v1/config`` and its receipt, the desired version in every ingest answer."""

from __future__ import annotations

import json

import pytest
import requests

from central.fleet import db, desired, push
from central.server import serve_in_thread
from node import protocol
from node.errors import ConfigError
from node.remote_keys import layer_hash, merge
from tests.central.helpers import KEY, NODE, body_of, make_batch, now_ms, post

GROUP_TOML = '[upload]\ninterval = "10s"\n[storm]\nrain_rate_mm_h = 15\n'
NODE_TOML = '[upload]\ninterval = "20s"\n'


def _nodes(store, *names, group="ward-3"):
    for name in names:
        store.add_node(name, KEY, now_ms())
        store.transaction(lambda tx, n=name: db.set_group(tx, n, group, now_ms()), write=True)


def _push(store, scope, target, text, **kw):
    return push.push(store, scope, target, text, author="alice", note="test", now_ms=now_ms(), **kw)


def _desired(store, node):
    return store.transaction(lambda tx: desired.desired(tx, node))


def test_layers_combine_group_then_node_with_a_version_naming_both(store):
    _nodes(store, "pole-1", "pole-2")
    g = _push(store, "group", "ward-3", GROUP_TOML)
    n = _push(store, "node", "pole-1", NODE_TOML)
    one, two = _desired(store, "pole-1"), _desired(store, "pole-2")
    assert one.version == f"g{g.layer.id}+n{n.layer.id}" and two.version == f"g{g.layer.id}"
    merged = merge(g.layer.doc(), n.layer.doc())
    assert merged["upload"]["interval"] == "20s" and merged["storm"]["rain_rate_mm_h"] == 15
    assert one.hash == layer_hash(merged) and two.hash == layer_hash(g.layer.doc())
    assert [x.scope for x in one.layers] == ["group", "node"]
    assert _desired(store, "nobody").version is None
    assert desired.parse_label(one.version) == (g.layer.id, n.layer.id)


def test_history_keeps_every_version_and_rollback_is_a_new_one(store):
    _nodes(store, "pole-1")
    first = _push(store, "group", "ward-3", GROUP_TOML)
    second = _push(store, "group", "ward-3", NODE_TOML)
    assert any(line.startswith('-interval = "10s"') for line in push.diff(second.previous, second.layer))
    text, old = push.rollback_text(store, "group", "ward-3", None)
    assert old == first.layer.id and text == GROUP_TOML
    back = _push(store, "group", "ward-3", text)
    versions = store.transaction(lambda tx: db.history(tx, "group", "ward-3"))
    assert [v.id for v in versions] == [first.layer.id, second.layer.id, back.layer.id]
    assert versions[0].author == "alice" and _desired(store, "pole-1").version == f"g{back.layer.id}"
    with pytest.raises(ConfigError, match="not a version"):
        push.rollback_text(store, "group", "ward-3", 999)


def test_a_bad_layer_is_refused_with_the_nodes_own_messages(store):
    from node import config

    _nodes(store, "pole-1")
    with pytest.raises(ConfigError) as refused:
        bad = '[upload]\ninterval = "1ms"\nintervall = 3\n[central]\nkey_file = "/k"\n'
        _push(store, "group", "ward-3", bad)
    with pytest.raises(ConfigError) as local:
        config.validate({"node": {"id": "x"}, "upload": {"interval": "1ms", "intervall": 3}})
    assert set(local.value.problems) <= set(refused.value.problems)  # the very lines the node prints
    assert any(line.startswith("central.key_file: may not come from the central")
               for line in refused.value.problems)
    _push(store, "node", "pole-1", '[upload]\nbackoff_initial = "10m"\n')
    with pytest.raises(ConfigError, match=r"backoff_initial: expected at most .*node pole-1"):
        _push(store, "group", "ward-3", '[upload]\nbackoff_max = "1m"\n')
    assert store.transaction(lambda tx: db.history(tx, "group", "ward-3")) == []


def _report(store, node, health):
    return store.transaction(lambda tx: desired.observe(tx, node, health, now_ms()), write=True)


def test_rollout_canaries_first_then_all_and_a_failure_stops_it(store):
    names = [f"pole-{i:02d}" for i in range(20)]
    _nodes(store, *names)
    old = _push(store, "group", "ward-3", GROUP_TOML).layer
    new = _push(store, "group", "ward-3", NODE_TOML, canary_pct=5.0)
    canaries = new.rollout.canaries
    assert len(canaries) == 1 and new.rollout.from_id == old.id
    versions = {n: _desired(store, n).version for n in names}
    assert {versions[n] for n in canaries} == {f"g{new.layer.id}"}
    assert {versions[n] for n in names if n not in canaries} == {f"g{old.id}"}
    _report(store, canaries[0], {"config_version": f"g{new.layer.id}", "config_state": "trial"})
    assert store.transaction(lambda tx: db.latest_rollout(tx, "ward-3")).state == "canary"
    _report(store, canaries[0], {"config_version": f"g{new.layer.id}", "config_state": "ok"})
    assert store.transaction(lambda tx: db.latest_rollout(tx, "ward-3")).state == "complete"
    assert {_desired(store, n).version for n in names} == {f"g{new.layer.id}"}

    bad = _push(store, "group", "ward-3", '[central]\nurl = "https://nowhere.invalid"\n', canary_pct=10.0)
    assert len(bad.rollout.canaries) == 2 and bad.rollout.from_id == new.layer.id
    first = bad.rollout.canaries[0]
    _report(store, first, {"config_version": f"g{new.layer.id}", "config_state": "ok",
                           "config_failed_version": f"g{bad.layer.id}",
                           "config_failed_reason": "no upload within 5m"})
    stopped = store.transaction(lambda tx: db.latest_rollout(tx, "ward-3"))
    assert stopped.state == "stopped" and stopped.reason == f"node {first}: no upload within 5m"
    assert {_desired(store, n).version for n in names} == {f"g{new.layer.id}"}  # canaries too


def _signed_config(url, key=KEY, node=NODE, body=b"{}"):
    ts = now_ms()
    headers = protocol.sign_request(key, "POST", protocol.CONFIG_PATH, body, ts, node_id=node)
    r = requests.post(url + protocol.CONFIG_PATH, data=body, headers=headers, timeout=10)
    return r, headers[protocol.HEADER_SIGNATURE]


def test_config_fetch_is_signed_both_ways_and_ingest_answers_name_the_version(store):
    store.add_node(NODE, KEY, now_ms())
    store.add_node("pole-2", bytes(32), now_ms())
    layer = _push(store, "node", NODE, GROUP_TOML).layer
    url, stop = serve_in_thread(store)
    try:
        r, sig = _signed_config(url)
        assert r.status_code == 200, r.text
        assert protocol.verify_receipt(KEY, sig, r.content, r.headers.get(protocol.HEADER_RECEIPT))
        assert not protocol.verify_receipt(bytes(32), sig, r.content, r.headers.get(protocol.HEADER_RECEIPT))
        answer = r.json()
        assert answer["version"] == f"n{layer.id}" and answer["layers"][0]["toml"] == GROUP_TOML
        assert answer["hash"] == layer_hash(layer.doc())
        wrong, _ = _signed_config(url, key=bytes(range(32)))
        assert wrong.status_code == 401 and wrong.json()["error"] == "bad_signature"
        other, _ = _signed_config(url, key=bytes(32), node="pole-2")
        assert other.status_code == 200 and other.json()["version"] is None
        ingest = post(url, body_of(make_batch(range(3))))
        assert ingest.status_code == 200
        assert ingest.json()["config"] == {"version": f"n{layer.id}", "hash": layer_hash(layer.doc())}
        plain = post(url, body_of(make_batch(range(3), node="pole-2")), key=bytes(32), node="pole-2")
        assert plain.status_code == 200 and "config" not in plain.json()
    finally:
        stop()


def test_canary_pick_is_spread_and_bounded():
    members = [f"n{i}" for i in range(300)]
    assert len(push.pick_canaries(members, 5, 1)) == 15
    assert push.pick_canaries(members, 5, 1) != push.pick_canaries(members, 5, 2)
    assert push.pick_canaries(["a"], 5, 1) == ["a"]
    assert push.parse_canary("5%") == 5.0
    for bad in ("0%", "100", "x"):
        with pytest.raises(ConfigError, match="--canary"):
            push.parse_canary(bad)
    assert json.loads(json.dumps(push.pick_canaries(members, 1, 3)))


def test_config_status_is_an_authenticated_read(store):
    from tests.central.helpers import get, read_token

    _nodes(store, "pole-1", "pole-2")
    store.add_node("pole-9", KEY, now_ms())
    layer = _push(store, "group", "ward-3", GROUP_TOML, canary_pct=50.0)
    auth = read_token(store)
    url, stop = serve_in_thread(store)
    try:
        assert requests.get(url + "/v1/config/status", timeout=10).status_code == 401
        r = get(url + "/v1/config/status?group=ward-3", auth)
        assert r.status_code == 200, r.text
        nodes = {n["node_id"]: n for n in r.json()["nodes"]}
        assert set(nodes) == {"pole-1", "pole-2"} and nodes["pole-1"]["state"] in ("pending", "-")
        (rollout,) = r.json()["rollouts"]
        assert rollout["version"] == layer.layer.id and rollout["state"] == "canary"
        assert rollout["canaries"] == layer.rollout.canaries
        everyone = get(url + "/v1/config/status", auth).json()["nodes"]
        assert {n["node_id"] for n in everyone} == {"pole-1", "pole-2", "pole-9"}
        bad = get(url + "/v1/config/status?group=no%20spaces", auth)
        assert bad.status_code == 400 and bad.json()["field"] == "group"
    finally:
        stop()
