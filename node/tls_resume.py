"""TLS session resumption across the uploader's connections (issue #22, docs/uploader.md).

In calm weather the uploader posts once per ``upload.interval`` (10 minutes in the example
config), much longer than the central keeps an idle connection open (75 s), so every round opens
a new TLS connection. A full TLS 1.3 handshake carries the central's certificate chain and a
signature (~3.6 KB both ways with an ECDSA chain, measured by bench/sim.py); resuming the previous
session with the ticket the central sent after it (RFC 8446 §2.2, PSK with (EC)DHE, so still
forward secret) skips them. The central's identity was verified in the full handshake the ticket
comes from; a ticket it no longer accepts (a restart: new ticket keys) simply gives a full
handshake, so nothing can fail because of resumption.

`make_context()` is the `ssl.SSLContext` the uploader's urllib3 pool connects with: it remembers
the newest session carrying a ticket and offers it on the next connection.
"""

from __future__ import annotations

import ssl
from typing import Any


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
    load_default_certs_first: bool = False

    def wrap_socket(self, sock: Any, server_side: bool = False, do_handshake_on_connect: bool = True,
                    suppress_ragged_eofs: bool = True, server_hostname: str | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        if self.load_default_certs_first:  # on the first connection, not in a constructor
            self.load_default_certs()
            self.load_default_certs_first = False
        if session is None and not server_side:
            session = self.saved_session
        return super().wrap_socket(sock, server_side=server_side,
                                   do_handshake_on_connect=do_handshake_on_connect,
                                   suppress_ragged_eofs=suppress_ragged_eofs,
                                   server_hostname=server_hostname, session=session)


def make_context(*, default_certs: bool = False) -> ResumingContext:
    """A verifying client context (chain and hostname). ``default_certs``: trust the system's
    store (loaded on the first connection); else the caller's pool loads the configured bundle
    (urllib3 ``ca_certs``). Without either, verification fails closed."""
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_default_certs_first = default_certs
    return ctx
