"""The central layer by layer against the real receiver on loopback."""

from __future__ import annotations

import socket
import time

import pytest

from node.diag.checks import build_checks
from node.diag.core import Runner, Status
from tests.diag.conftest import by_id, config_text, context

NODE = "hn-test-0001"
KEY = bytes(range(32))


@pytest.fixture
def central(tmp_path):
    server = pytest.importorskip("central.server", reason="the receiver (branch central) is not merged")
    from central.store import open_store

    serve_in_thread = server.serve_in_thread

    store = open_store(f"sqlite:///{tmp_path / 'central.db'}")
    store.add_node(NODE, KEY, int(time.time() * 1000))
    url, stop = serve_in_thread(store)
    yield url
    stop()
    store.close()


def key_file(tmp_path, key: bytes = KEY):
    p = tmp_path / "node.key"
    p.write_text(key.hex() + "\n")
    p.chmod(0o600)
    return p


def central_results(tmp_path, sysroot, state_dir, url: str | None, key: bytes = KEY, node_id: str = NODE):
    section = f'[central]\nurl = "{url}"\nkey_file = "{key_file(tmp_path, key)}"\n' if url else ""
    cfg = tmp_path / "central.toml"
    cfg.write_text(config_text(state_dir, central=section).replace(NODE, node_id))
    ctx = context(cfg, sysroot)
    checks = [c for c in build_checks(ctx) if c.id.startswith("central")]
    return Runner(checks).run(ctx)


def free_port_not_listening():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
    return s


def test_reachable_central_with_the_right_key_passes(tmp_path, sysroot, state_dir, central):
    results = central_results(tmp_path, sysroot, state_dir, central)
    assert by_id(results, "central.dns").status is Status.PASS
    assert by_id(results, "central.tcp").status is Status.PASS
    assert by_id(results, "central.tls").status is Status.SKIP  # http:// on loopback
    auth = by_id(results, "central.auth")
    assert auth.status is Status.PASS, auth
    assert f"signed ping accepted for node {NODE}" in auth.summary and "round trip" in auth.summary


def test_wrong_key_fails_auth_with_the_remedy(tmp_path, sysroot, state_dir, central):
    results = central_results(tmp_path, sysroot, state_dir, central, key=b"\x01" * 32)
    assert by_id(results, "central.tcp").status is Status.PASS
    auth = by_id(results, "central.auth")
    assert auth.status is Status.FAIL
    assert "wrong key" in auth.summary
    assert f"streetnode-central node add {NODE}" in auth.remedy
    assert "HTTP 401" in auth.detail


def test_unregistered_node_is_named(tmp_path, sysroot, state_dir, central):
    results = central_results(tmp_path, sysroot, state_dir, central, node_id="hn-stranger-9")
    auth = by_id(results, "central.auth")
    assert auth.status is Status.FAIL and "does not know node 'hn-stranger-9'" in auth.summary


def test_unreachable_central_names_the_tcp_layer(tmp_path, sysroot, state_dir):
    s = free_port_not_listening()
    try:
        port = s.getsockname()[1]
        results = central_results(tmp_path, sysroot, state_dir, f"http://127.0.0.1:{port}")
    finally:
        s.close()
    tcp = by_id(results, "central.tcp")
    assert tcp.status is Status.FAIL
    assert tcp.summary == f"TCP: connection refused to 127.0.0.1:{port}"
    assert "is the central up" in tcp.remedy and "firewall" in tcp.remedy
    assert by_id(results, "central.auth").status is Status.SKIP
    assert "central.tcp did not pass" in by_id(results, "central.auth").summary


def test_missing_key_file_fails_auth(tmp_path, sysroot, state_dir, central):
    central_results(tmp_path, sysroot, state_dir, central)  # writes the config and the key
    (tmp_path / "node.key").unlink()
    ctx = context(tmp_path / "central.toml", sysroot)
    results = Runner([c for c in build_checks(ctx) if c.id.startswith("central")]).run(ctx)
    auth = by_id(results, "central.auth")
    assert auth.status is Status.FAIL and auth.summary.startswith("key: central.key_file")


def test_no_central_configured_warns(tmp_path, sysroot, state_dir):
    results = central_results(tmp_path, sysroot, state_dir, None)
    r = by_id(results, "central")
    assert r.status is Status.WARN and "not configured" in r.summary


def test_a_central_that_accepts_but_never_answers_is_cut_off_by_the_deadline(tmp_path, sysroot, state_dir):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)  # the kernel completes TCP handshakes; nobody ever reads or answers
    try:
        port = s.getsockname()[1]
        results = central_results(tmp_path, sysroot, state_dir, f"http://127.0.0.1:{port}")
    finally:
        s.close()
    assert by_id(results, "central.tcp").status is Status.PASS
    auth = by_id(results, "central.auth")
    assert auth.status is Status.FAIL
    assert auth.summary.startswith("HTTP: the central accepted the connection but did not answer")
    assert "operators" in auth.remedy
