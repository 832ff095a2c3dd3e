"""The uploader's HTTP: sign a request, post it, tell a signed answer from any other.

`Transport.post(path, body)` returns an `Answer`; it never raises for what the network or a
proxy does (every urllib3 error, and a CA bundle or socket the OS refused), so the caller's
policy sees every outcome. It talks urllib3 directly: `requests` on top cost the daemon 4.2 MiB of
RSS in imports alone (charset detection, IDNA tables, cookies) for nothing it used (#22). It
also keeps what only it can measure: bytes on the wire both ways, and the central's clock,
learned only from answers that carry a valid receipt (a captive portal's ``Date`` must never move
the node's time).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
import urllib3.exceptions
from urllib3.util import SKIP_HEADER

from node import protocol
from node.clock import boot_ms
from node.tls_resume import make_context
from node.upload_policy import server_time_ms

log = logging.getLogger("streetnode.uploader")

CLOCK_REPORT_MS = 1000  # a learned offset is reported when it moves by more than this
_TITLE_RE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


@dataclass(frozen=True)
class Answer:
    """One attempt's outcome: ``status`` None when no response came back (``error`` says why)."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # parsed JSON, or None
    signed: bool = False  # carries a valid X-Streetnode-Receipt for this very request
    error: str | None = None
    summary: str = ""  # what an unsigned answer looked like: "text/html 'Maintenance'"


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


# every header byte is paid for on a metered SIM, every round (#22): only what the protocol needs.
# */* and keep-alive are HTTP/1.1 defaults, the central's answers are a few hundred bytes of JSON
# (nothing to decompress), the firmware travels in the health keys: no User-Agent, no
# Accept-Encoding (SKIP_HEADER keeps urllib3 and http.client from adding their own)
_SKIPPED = {"User-Agent": SKIP_HEADER, "Accept-Encoding": SKIP_HEADER}


def make_pool(scheme: str, ca_bundle: str | None, connect_timeout: float,
              read_timeout: float) -> urllib3.PoolManager:
    """One kept-alive connection to the central; HTTPS verified (chain and hostname) against
    ``ca_bundle`` or the system's trust store, TLS sessions resumed (node/tls_resume.py). No I/O:
    urllib3 loads ``ca_bundle`` when it connects."""
    kwargs: dict[str, Any] = {"num_pools": 1, "maxsize": 1, "retries": False, "block": False,
                              "timeout": urllib3.Timeout(connect=connect_timeout, read=read_timeout)}
    if scheme == "https":
        kwargs.update(ssl_context=make_context(default_certs=not ca_bundle), cert_reqs="CERT_REQUIRED",
                      ca_certs=ca_bundle)
    return urllib3.PoolManager(**kwargs)


class Transport:
    """``Transport(base_url, key, node_id)``: signed POSTs over one kept-alive connection."""

    def __init__(self, base_url: str, key: bytes, node_id: str, *, connect_timeout: float = 5,
                 read_timeout: float = 30, ca_bundle: str | None = None,
                 clock: Callable[[], float] = time.time, boot: Callable[[], int] = boot_ms,
                 pool: urllib3.PoolManager | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"central.url: expected an http:// or https:// URL, got {base_url!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError("central.url: plain http:// is only allowed to a loopback host; use https://")
        if not key:
            raise ValueError("key: expected the node key bytes, got an empty key")
        self.base_url = base_url.rstrip("/")
        self.node_id = node_id
        self.timeout = (connect_timeout, read_timeout)
        self.verify: str | bool = ca_bundle or True  # TLS verification is never turned off
        self.clock_offset_ms: int | None = None  # central time - local time, once learned
        # the central's time minus the boot clock (ms), measured with it: unlike the offset, still
        # right after our wall clock steps (node/clock.py follows it while unsynced or suspect)
        self.central_base_ms: int | None = None
        self._key = key
        self._clock = clock
        self._boot = boot
        self._last_signed_ms = 0
        self._reported_offset: int | None = None
        self._offset_to_report: int | None = None
        self.counters = {"requests": 0, "bytes_sent": 0, "bytes_received": 0}
        self.last_attempt_at: float | None = None
        self._pool = pool or make_pool(parts.scheme, ca_bundle, connect_timeout, read_timeout)

    def url(self, path: str) -> str:
        return self.base_url + path

    def now_ms(self) -> int:
        """The node's wall time corrected by the central's (what requests are signed with)."""
        return int(self._clock() * 1000) + (self.clock_offset_ms or 0)

    def close(self) -> None:
        self._pool.clear()

    def take_offset_report(self) -> int | None:
        """A newly learned clock offset worth reporting (once), else None."""
        offset, self._offset_to_report = self._offset_to_report, None
        return offset

    # ------------------------------------------------------------------ one request
    def post(self, path: str, body: bytes, *, body_headers: Mapping[str, str] | None = None) -> Answer:
        """Sign and POST ``body`` to ``path`` once; any failure comes back as an `Answer`."""
        # a resend within the same millisecond must not repeat its signature (replay); a clock
        # corrected backwards simply starts a new sequence
        ts = self.now_ms()
        if 0 <= self._last_signed_ms - ts < 1000:
            ts = self._last_signed_ms + 1
        self._last_signed_ms = ts
        headers = dict(protocol.BODY_HEADERS if body_headers is None else body_headers)
        headers.update(protocol.sign_request(self._key, "POST", path, body, ts, node_id=self.node_id))
        headers["Content-Length"] = str(len(body))
        request_signature = headers[protocol.HEADER_SIGNATURE]
        url = self.url(path)
        t0 = self._clock()
        b0 = self._boot()
        self.last_attempt_at = t0
        self.counters["requests"] += 1
        try:
            r = self._pool.request("POST", url, body=body, headers={**_SKIPPED, **headers},
                                   redirect=False, retries=False)
            content = r.data
        except (OSError, urllib3.exceptions.HTTPError) as e:  # and a CA bundle the OS refused
            self._count(request_bytes(url, headers, body), 0)
            return Answer(None, error=describe_network_error(e, url))
        t1 = self._clock()
        b1 = self._boot()
        self._count(request_bytes(url, headers, body), response_bytes(r, content))
        signed = protocol.verify_receipt(self._key, request_signature, content,
                                         r.headers.get(protocol.HEADER_RECEIPT))
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = None
        if signed:
            self._learn_clock(r.headers, parsed, (t0 + t1) / 2, (b0 + b1) // 2)
        return Answer(r.status, r.headers, parsed, signed, None,
                      "" if signed else summarize(r.headers.get("Content-Type", ""), content, r.headers))

    def ping(self) -> Answer:
        """A signed, empty POST /v1/ping: does our central answer on this path at all?"""
        return self.post(protocol.PING_PATH, b"", body_headers={})

    def _count(self, sent: int, received: int) -> None:
        self.counters["bytes_sent"] += sent
        self.counters["bytes_received"] += received

    def _learn_clock(self, headers: Mapping[str, str], answer: Any, local_mid: float,
                     boot_mid: int) -> None:
        """Update ``clock_offset_ms`` and ``central_base_ms`` from the central's time in a signed
        answer."""
        found = server_time_ms(headers, answer)
        if found is None:
            return
        server_ms, uncertainty = found
        offset = int(server_ms - local_mid * 1000)
        if self.clock_offset_ms is not None and uncertainty and \
                abs(offset - self.clock_offset_ms) <= uncertainty + CLOCK_REPORT_MS:
            return  # a whole-second Date header cannot refine a better estimate
        self.clock_offset_ms = offset
        self.central_base_ms = int(server_ms) - int(boot_mid)
        if self._reported_offset is None or abs(offset - self._reported_offset) > CLOCK_REPORT_MS:
            self._reported_offset = offset
            self._offset_to_report = offset


# ---------------------------------------------------------------------- helpers
def describe_network_error(exc: BaseException, url: str) -> str:
    """What went wrong on the way to the central, in words: the innermost cause, whole, on one line.

    urllib3 wraps NewConnectionError around the socket's error, and its text repeats the
    object reprs ("<urllib3.connection.HTTPSConnection object
    at 0x...>: Failed to establish a new connection: [Errno 111] Connection refused"); a
    technician needs "connection refused by central.example.org:443".
    """
    import errno
    import socket
    import ssl

    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    chain = _causes(exc)
    for e in reversed(chain):  # the innermost cause first
        if isinstance(e, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve {parts.hostname} (DNS: {e.strerror or e})"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS certificate of {where} not trusted ({e.reason}: {e.verify_message})"
        if isinstance(e, ssl.SSLError):
            return f"TLS with {where} failed: {e.reason or e}"
        if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no route to {where} ({e.strerror}): is the uplink up?"
        if isinstance(e, ConnectionResetError):
            return f"connection reset by {where}"
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        kind = "connect" if isinstance(exc, urllib3.exceptions.ConnectTimeoutError) else "read"
        return f"no answer from {where} ({kind} timeout)"
    inner = chain[-1]
    text = " ".join(str(inner).split()) or type(inner).__name__
    return f"{type(inner).__name__} talking to {where}: {text}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, urllib3's ``.reason``, ``args[0]``."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10 and all(e is not c for c in chain):
        chain.append(e)
        reason = getattr(e, "reason", None)
        wrapped = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        e = e.__cause__ or (reason if isinstance(reason, BaseException) else None) or wrapped or e.__context__
    return chain


def summarize(content_type: str, content: bytes, headers: Mapping[str, str]) -> str:
    """A short, printable description of an answer that is not our central's."""
    import html  # here, not at the top: its entity table is ~0.3 MiB the daemon rarely needs

    kind = content_type.split(";")[0].strip() or "no content type"
    m = _TITLE_RE.search(content[:4096])
    text = m.group(1) if m else content[:60]
    words = " ".join(html.unescape(text.decode("utf-8", "replace")).split())[:60]
    where = f" -> {headers['Location'][:80]}" if "Location" in headers else ""
    return f"{kind} {words!r}{where}" if words else f"{kind}{where}"


def request_bytes(url: str, headers: Mapping[str, str], body: bytes) -> int:
    """Bytes of the HTTP/1.1 request as http.client writes it (request line, Host, headers, body)."""
    parts = urlsplit(url)
    host = parts.netloc
    size = len(f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\n")
    size += sum(len(f"{k}: {v}\r\n".encode("latin-1", "replace")) for k, v in headers.items()
                if v != SKIP_HEADER)
    return size + 2 + len(body)


def response_bytes(r: urllib3.BaseHTTPResponse, content: bytes) -> int:
    """Bytes of the HTTP/1.1 response on the wire (status line, headers, body as sent)."""
    size = len(f"HTTP/1.1 {r.status} {r.reason}\r\n")
    size += sum(len(f"{k}: {v}\r\n".encode("latin-1", "replace")) for k, v in r.headers.items())
    length = r.headers.get("Content-Length")
    return size + 2 + (int(length) if length and length.isdigit() else len(content))
