"""TLS to the real receiver: verified against a custom CA bundle, refused without it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from central.server import serve_in_thread
from node.uploader import Uploader
from tests.uploader.conftest import NODE, Central, fill

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@pytest.fixture
def tls_central(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    c = Central(tmp_path)
    c._stop()  # replace the plain-HTTP server by a TLS one on the same store
    c.url, c._stop = serve_in_thread(c.store, tls_cert=str(cert), tls_key=str(key))
    c.cert = cert
    yield c
    c.close()


def test_custom_ca_bundle_is_verified(buf, tls_central):
    assert tls_central.url.startswith("https://127.0.0.1:")
    total = fill(buf, 10)
    up = Uploader(buf, tls_central.url, tls_central.key, NODE, ca_bundle=str(tls_central.cert))
    res = up.run_round()
    assert res.error is None and res.readings == total
    assert tls_central.seqs() == list(range(1, total + 1))
    up.close()


def test_unknown_certificate_is_refused_and_the_data_kept(buf, tls_central):
    total = fill(buf, 10)
    up = Uploader(buf, tls_central.url, tls_central.key, NODE, rng=lambda: 0.5)
    res = up.run_round()
    assert res.error.startswith("TLS certificate of 127.0.0.1:") and "CERTIFICATE_VERIFY_FAILED" in res.error
    assert up.status()["next_attempt_at"] > up.status()["last_attempt_at"]
    assert tls_central.seqs() == [] and buf.stats().readings == total
    up.close()


def test_a_new_connection_resumes_the_tls_session_and_a_lost_ticket_costs_a_full_handshake(
        buf, tls_central):
    """#22: calm rounds are farther apart than the central's keep-alive; each new connection
    resumes the last TLS session (no certificate chain on the SIM)."""
    up = Uploader(buf, tls_central.url, tls_central.key, NODE, ca_bundle=str(tls_central.cert))
    ctx = up.transport._pool.connection_pool_kw["ssl_context"]
    opened = []
    wrap = ctx.wrap_socket

    def spy(*args, **kwargs):
        opened.append(wrap(*args, **kwargs))
        return opened[-1]

    ctx.wrap_socket = spy
    reused = []
    total = 0
    for i in range(3):
        total += fill(buf, 5, start=100 * i)
        if i == 2:
            ctx.saved_session = None  # e.g. a restarted central: a full handshake, still verified
        assert up.run_round().error is None
        reused.append(opened[-1].session_reused)
        up.transport.close()  # the central closed the idle connection
    assert len(opened) == 3 and reused == [False, True, False]
    assert tls_central.seqs() == list(range(1, total + 1))
    up.close()
