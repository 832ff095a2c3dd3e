"""TLS session resumption across the uploader's connections (issue #22, docs/uploader.md).

In calm weather the uploader posts once per ``upload.interval`` (10 minutes in the example
config), much longer than the central keeps an idle connection open (75 s), so every round opens
a new TLS connection. A full TLS 1.3 handshake carries the central's certificate chain and a
signature (~3.6 KB both ways with an ECDSA chain, measured by bench/sim.py); resuming the previous
session with the ticket the central sent after it (RFC 8446 §2.2, PSK with (EC)DHE, so still
forward secret) skips them. The central's identity was verified in the full handshake the ticket
comes from; a ticket it no longer accepts (a restart: new ticket keys) simply gives a full
handshake, so nothing can fail because of resumption.

`ResumingAdapter()` is a `requests` adapter for ``https://`` whose connections share one
`ssl.SSLContext` that remembers the newest session carrying a ticket and offers it on the next
connection.
"""

from __future__ import annotations

import ssl
from typing import Any

import requests.adapters


class _TicketKeepingSocket(ssl.SSLSocket):
    """Hands the session to its context once a ticket arrived (TLS 1.3 sends tickets after the
    handshake; they are read with the first answer)."""

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        if not getattr(self, "_ticket_kept", False):
            session = self.session
            if session is not None and session.has_ticket:
                self.context.saved_session = session  # type: ignore[attr-defined]
                self._ticket_kept = True
        return n


class ResumingContext(ssl.SSLContext):
    """A client context offering the last session with a ticket to each new connection."""

    sslsocket_class = _TicketKeepingSocket
    saved_session: ssl.SSLSession | None = None

    def wrap_socket(self, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        if session is None and not server_side:
            session = self.saved_session
        return super().wrap_socket(sock, server_side=server_side,
                                   do_handshake_on_connect=do_handshake_on_connect,
                                   suppress_ragged_eofs=suppress_ragged_eofs,
                                   server_hostname=server_hostname, session=session)


def make_context() -> ResumingContext:
    """A verifying client context (hostname and chain). No I/O: `requests` hands urllib3 the CA
    bundle for every connection (``verify``: the configured ``ca_bundle`` or its own), which loads
    it into this context; without one, verification fails closed."""
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class ResumingAdapter(requests.adapters.HTTPAdapter):
    """``session.mount("https://", ResumingAdapter())``."""

    def __init__(self, **kwargs: Any) -> None:
        self.ssl_context = make_context()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **kwargs)
