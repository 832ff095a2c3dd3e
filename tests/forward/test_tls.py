"""TLS as ThingsBoard offers it: server certificate from a private CA, then either X.509 client
certificates or username/password; our own Mosquitto on a free port, real handshakes."""

from __future__ import annotations

import subprocess

import pytest

from central.forward.config import parse_sink
from central.forward.db import ForwardDb
from central.forward.forwarder import Forwarder
from tests.forward.broker import OwnBroker
from tests.forward.test_forwarder import wait_done
from tests.sta.data import LOCATED, readings, upload


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_pki(d) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (CN=gateway), all PEM."""
    p = {k: str(d / f"{k}.pem") for k in ("ca", "ca_key", "server", "server_key", "client", "client_key")}
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=streetnode test CA", "-keyout", p["ca_key"],
            "-out", p["ca"])
    for name, cn, ext in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                          ("client", "gateway", "extendedKeyUsage=clientAuth")):
        csr = str(d / f"{name}.csr")
        extfile = d / f"{name}.ext"
        extfile.write_text(ext + "\n")
        openssl("req", *ec, "-subj", f"/CN={cn}", "-keyout", p[f"{name}_key"], "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
                "-days", "2", "-extfile", str(extfile), "-out", p[name])
    return p


@pytest.fixture
def db_url(tmp_path):
    """TLS does not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_listener(pki, rest: str) -> str:
    return f"cafile {pki['ca']}\ncertfile {pki['server']}\nkeyfile {pki['server_key']}\n{rest}"


def forward_once(central, broker, **sink_keys) -> Forwarder:
    sink = parse_sink({"name": "tb", "host": "127.0.0.1", "port": broker.port, "tls": True, **sink_keys}, "f")
    forwarder = Forwarder(sink, ForwardDb.for_store(central.store))
    forwarder.start()
    return forwarder


def test_client_certificate(central, pki, tmp_path):
    broker = OwnBroker(tmp_path, listener=tls_listener(
        pki, "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"))
    broker.start()
    upload(central.url, "pole-1", 1, readings(10), LOCATED)
    forwarder = forward_once(central, broker, ca_file=pki["ca"], cert_file=pki["client"],
                             key_file=pki["client_key"])
    try:
        wait_done(forwarder, 30, 30)
    finally:
        forwarder.stop()
        broker.stop()
    log = (tmp_path / "mosquitto.log").read_text()
    assert "as gateway" in log or "u'gateway'" in log, log[-500:]


def test_username_password_and_a_wrong_password(central, pki, tmp_path):
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), "GATEWAY_TOKEN", "s3cret"], check=True,
                   capture_output=True, timeout=30)
    passwords.chmod(0o644)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    broker = OwnBroker(tmp_path, listener=tls_listener(
        pki, f"password_file {passwords}\nallow_anonymous false\n"))
    broker.start()
    upload(central.url, "pole-1", 1, readings(10), LOCATED)
    try:
        wrong = tmp_path / "wrong"
        wrong.write_text("nope\n")
        refused = forward_once(central, broker, ca_file=pki["ca"], username="GATEWAY_TOKEN",
                               password_file=str(wrong))
        try:
            deadline_wait(lambda: refused.stats.failures > 0)
            assert refused.stats.readings == 0 and "refused" in (refused.stats.last_error or "")
        finally:
            refused.stop()
        unverified = forward_once(central, broker, username="GATEWAY_TOKEN", password_file=str(secret))
        try:  # the system CAs do not know our private CA: no connection, nothing sent
            deadline_wait(lambda: unverified.stats.failures > 0)
            error = (unverified.stats.last_error or "").lower()
            assert unverified.stats.readings == 0 and "certificate" in error, error
        finally:
            unverified.stop()
        good = forward_once(central, broker, ca_file=pki["ca"], username="GATEWAY_TOKEN",
                            password_file=str(secret))
        try:
            wait_done(good, 30, 30)
        finally:
            good.stop()
    finally:
        broker.stop()


def deadline_wait(predicate, timeout_s: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
