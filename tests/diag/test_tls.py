"""The TLS layer against a real TLS listener on loopback with certificates made by openssl."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from node.diag.checks import build_checks
from node.diag.core import Runner, Status
from tests.diag.conftest import by_id, config_text, context

CA_CNF = """
[ca]
default_ca = CA_default
[CA_default]
dir = .
database = ./index.txt
new_certs_dir = .
serial = ./serial
default_md = sha256
policy = policy_any
copy_extensions = copy
unique_subject = no
[policy_any]
commonName = supplied
[req]
distinguished_name = dn
prompt = no
[dn]
CN = 127.0.0.1
[ext]
subjectAltName = IP:127.0.0.1,DNS:localhost
basicConstraints = CA:TRUE
"""


def make_cert(d, start: float, end: float):
    """A self-signed certificate for 127.0.0.1 valid from ``start`` to ``end`` (epoch seconds)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl command not installed")
    d.mkdir()
    (d / "ca.cnf").write_text(CA_CNF)
    (d / "index.txt").touch()
    (d / "serial").write_text("01\n")

    def stamp(t: float) -> str:
        return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))

    run = {"cwd": d, "check": True, "capture_output": True}
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem",
                    "-out", "req.csr", "-config", "ca.cnf"], **run)
    subprocess.run(["openssl", "ca", "-batch", "-selfsign", "-config", "ca.cnf", "-keyfile", "key.pem",
                    "-in", "req.csr", "-out", "cert.pem", "-startdate", stamp(start), "-enddate",
                    stamp(end), "-extensions", "ext", "-notext"], **run)
    return d / "cert.pem", d / "key.pem"


class TLSListener:
    """Accepts connections and completes TLS handshakes until stopped."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    s.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def tls_result(tmp_path, sysroot, state_dir, cert, key, *, trust: bool):
    srv = TLSListener(cert, key)
    try:
        ca = f'ca_bundle = "{cert}"\n' if trust else ""
        central = f'[central]\nurl = "https://127.0.0.1:{srv.port}"\nkey_file = "{tmp_path}/none.key"\n{ca}'
        cfg = tmp_path / "tls.toml"
        cfg.write_text(config_text(state_dir, central=central))
        ctx = context(cfg, sysroot)
        checks = [c for c in build_checks(ctx) if c.id in ("central.dns", "central.tcp", "central.tls")]
        return by_id(Runner(checks).run(ctx), "central.tls")
    finally:
        srv.close()


def test_valid_certificate_passes(tmp_path, sysroot, state_dir):
    now = time.time()
    cert, key = make_cert(tmp_path / "ok", now - 86400, now + 365 * 86400)
    r = tls_result(tmp_path, sysroot, state_dir, cert, key, trust=True)
    assert r.status is Status.PASS, r
    assert "with 127.0.0.1, certificate valid until" in r.summary


def test_untrusted_certificate_names_the_ca_bundle(tmp_path, sysroot, state_dir):
    now = time.time()
    cert, key = make_cert(tmp_path / "ok", now - 86400, now + 365 * 86400)
    r = tls_result(tmp_path, sysroot, state_dir, cert, key, trust=False)
    assert r.status is Status.FAIL
    assert r.summary.startswith("TLS: certificate rejected") and "ca_bundle" in r.remedy


def test_expired_certificate_blames_clock_or_certificate(tmp_path, sysroot, state_dir):
    cert, key = make_cert(tmp_path / "old", time.time() - 400 * 86400, time.time() - 30 * 86400)
    r = tls_result(tmp_path, sysroot, state_dir, cert, key, trust=True)
    assert r.status is Status.FAIL
    assert "certificate has expired for this node's clock" in r.summary
    assert r.remedy.startswith("fix the clock first")


def test_certificate_about_to_expire_warns(tmp_path, sysroot, state_dir):
    now = time.time()
    cert, key = make_cert(tmp_path / "soon", now - 86400, now + 5 * 86400)
    r = tls_result(tmp_path, sysroot, state_dir, cert, key, trust=True)
    assert r.status is Status.WARN and "certificate expires" in r.summary


def test_all_layers_over_https_with_the_real_receiver(tmp_path, sysroot, state_dir):
    from central.server import serve_in_thread
    from central.store import open_store

    now = time.time()
    cert, key = make_cert(tmp_path / "srv", now - 86400, now + 365 * 86400)
    node_key = bytes(range(32))
    store = open_store(f"sqlite:///{tmp_path / 'central.db'}")
    store.add_node("hn-test-0001", node_key, int(now * 1000))
    url, stop = serve_in_thread(store, tls_cert=str(cert), tls_key=str(key))
    try:
        assert url.startswith("https://")
        kf = tmp_path / "node.key"
        kf.write_text(node_key.hex())
        kf.chmod(0o600)
        central = f'[central]\nurl = "{url}"\nkey_file = "{kf}"\nca_bundle = "{cert}"\n'
        cfg = tmp_path / "https.toml"
        cfg.write_text(config_text(state_dir, central=central))
        ctx = context(cfg, sysroot)
        results = Runner([c for c in build_checks(ctx) if c.id.startswith("central.")]).run(ctx)
    finally:
        stop()
        store.close()
    assert [r.status for r in results] == [Status.PASS] * 4, results
    assert by_id(results, "central.tls").summary.startswith("TLS TLSv1.")
    assert "signed ping accepted" in by_id(results, "central.auth").summary
