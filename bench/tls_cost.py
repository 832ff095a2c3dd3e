"""Bytes TLS and TCP/IP add to one HTTPS upload, measured with Python's ssl module.

A throwaway PKI like a public one (root -> intermediate -> leaf, ECDSA P-256;
the server sends leaf + intermediate) is made with the ``openssl`` CLI; client
and server `ssl.SSLObject`s talk over memory BIOs, so every TLS byte is counted
exactly: the full TLS 1.3 handshake (including the server's session tickets),
then one request/response of the given sizes, then close_notify. TCP/IP is
estimated: 52 B of IPv4+TCP headers per segment (MSS 1448), 3 handshake and 4
teardown segments, one ACK per data flight.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TCP_IP_HEADER = 52  # IPv4 20 + TCP 20 + timestamps option 12
MSS = 1448
TCP_CONTROL_SEGMENTS = 7  # SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK


@dataclass(frozen=True)
class TlsCost:
    handshake_up: int  # client -> server TLS bytes before application data
    handshake_down: int
    request_up: int  # TLS bytes carrying the request (records + overhead)
    response_down: int
    close: int
    segments: int  # estimated TCP segments of the whole exchange

    @property
    def tls_total(self) -> int:
        return self.handshake_up + self.handshake_down + self.request_up + self.response_down + self.close

    def ip_total(self) -> int:
        """Everything a metered link counts for one upload on a fresh connection."""
        return self.tls_total + self.segments * TCP_IP_HEADER

    def ip_reused(self) -> int:
        """One upload on a kept-alive TLS connection: data records, their segments and two ACKs."""
        segments = -(-self.request_up // MSS) + -(-self.response_down // MSS) + 2
        return self.request_up + self.response_down + segments * TCP_IP_HEADER


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path, san: str = "DNS:central.example.org") -> None:
    """root.pem, chain.pem (leaf + intermediate) and leaf.key in ``d``; the leaf is for ``san``."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.pem", "-days", "3650",
             "-subj", "/O=Streetnode Bench Root/CN=Streetnode Bench Root CA", cwd=d)
    (d / "ca.ext").write_text("basicConstraints=critical,CA:true,pathlen:0\n"
                              "keyUsage=critical,keyCertSign,cRLSign\n")
    _openssl("req", *ec, "-keyout", "int.key", "-out", "int.csr",
             "-subj", "/O=Streetnode Bench/CN=Streetnode Bench Intermediate E1", cwd=d)
    _openssl("x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key",
             "-CAcreateserial", "-out", "int.pem", "-days", "1825", "-extfile", "ca.ext", cwd=d)
    (d / "leaf.ext").write_text("basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature\n"
                                f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n")
    _openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=central.example.org",
             cwd=d)
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "int.pem", "-CAkey", "int.key",
             "-CAcreateserial", "-out", "leaf.pem", "-days", "90", "-extfile", "leaf.ext", cwd=d)
    (d / "chain.pem").write_text((d / "leaf.pem").read_text() + (d / "int.pem").read_text())


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO) -> int:
    data = src.read()
    dst.write(data)
    return len(data)


def measure(request_bytes: int, response_bytes: int) -> TlsCost | None:
    """TLS bytes of one HTTPS exchange on a fresh connection; None without the openssl CLI."""
    if shutil.which("openssl") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_pki(d)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(d / "chain.pem", d / "leaf.key")
        cctx = ssl.create_default_context(cafile=str(d / "root.pem"))
        c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        client = cctx.wrap_bio(c_in, c_out, server_hostname="central.example.org")
        server = sctx.wrap_bio(s_in, s_out, server_side=True)
        up = down = 0
        flights = 0
        done_c = done_s = False
        for _ in range(20):
            for obj, flag in ((client, "c"), (server, "s")):
                if (flag == "c" and done_c) or (flag == "s" and done_s):
                    continue
                try:
                    obj.do_handshake()
                    if flag == "c":
                        done_c = True
                    else:
                        done_s = True
                except ssl.SSLWantReadError:
                    pass
                n_up, n_down = _pump(c_out, s_in), _pump(s_out, c_in)
                up, down = up + n_up, down + n_down
                flights += (n_up > 0) + (n_down > 0)
            if done_c and done_s:
                break
        # TLS 1.3 session tickets arrive after the handshake; the client reads them with the response
        client.write(b"x" * request_bytes)
        req = _pump(c_out, s_in)
        got = 0
        while got < request_bytes:
            got += len(server.read(65536))
        server.write(b"y" * response_bytes)
        resp = _pump(s_out, c_in)
        got = 0
        while got < response_bytes:
            got += len(client.read(65536))
        for obj in (client, server):
            try:
                obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass
        close = _pump(c_out, s_in) + _pump(s_out, c_in)
        data_segments = sum(-(-n // MSS) for n in (up, down, req, resp)) + flights + 2
        return TlsCost(handshake_up=up, handshake_down=down, request_up=req, response_down=resp,
                       close=close, segments=data_segments + TCP_CONTROL_SEGMENTS)
