"""The central, layer by layer: DNS, TCP, TLS (certificate vs the node's clock), signed ping.

Each layer is its own check that needs the one below, so the first FAIL names the
layer that broke and the layers above say "not checked". Every socket operation
has a timeout well inside the check's deadline.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from urllib.parse import urlsplit

from node.diag.context import DiagContext
from node.diag.core import Result, Status, fail, ok, skip, warn
from node.diag.system import fmt_age, fmt_time
from node.i18n import _, number

LAYER_TIMEOUT_S = 2.5
CERT_EXPIRY_WARN_S = 14 * 86400
CLOCK_OFFSET_WARN_MS = 60_000


def _target(ctx: DiagContext) -> tuple[str, str, int, str]:
    assert ctx.cfg is not None
    url = ctx.cfg.central["url"]
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname or "", port, url


def _timeout(ctx: DiagContext) -> float:
    return min(LAYER_TIMEOUT_S, ctx.cfg.central["connect_timeout"]) if ctx.cfg else LAYER_TIMEOUT_S


def _blocked(ctx: DiagContext, cid: str, below: str) -> Result | None:
    prior = ctx.prior(below)
    if not prior or prior[0].status in (Status.FAIL, Status.SKIP):
        return skip(cid, _("not checked: {check} did not pass").format(check=below))
    return None


def check_not_configured(ctx: DiagContext) -> Result:
    if ctx.cfg is None:
        return skip("central", _("not checked: the configuration is invalid"))
    return warn("central", _("not configured ([central].url unset): readings are only buffered on the node"),
                _("set [central] url and key_file to the values the city's operators gave you"))


def check_dns(ctx: DiagContext) -> Result:
    _scheme, host, port, _url = _target(ctx)
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    t0 = time.monotonic()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return fail("central.dns", _("DNS: cannot resolve {host}: {reason}").format(host=host,
                                                                                   reason=e.strerror),
                    _("check the uplink and the resolver (`resolvectl status`, /etc/resolv.conf); or put "
                      "the central's IP address in [central].url"))
    addrs = list(dict.fromkeys(info[4][0] for info in infos))
    ctx.scratch["central.addrs"] = [(info[0], info[4]) for info in infos]
    if literal:
        return ok("central.dns", _("{host} is an IP address: no lookup needed").format(host=host))
    return ok("central.dns", _("{host} resolves to {addresses} ({ms} ms)").format(
        host=host, addresses=", ".join(addrs[:4]), ms=number((time.monotonic() - t0) * 1000, 0)))


def check_tcp(ctx: DiagContext) -> Result:
    blocked = _blocked(ctx, "central.tcp", "central.dns")
    if blocked:
        return blocked
    _scheme, host, port, _url = _target(ctx)
    timeout = _timeout(ctx)
    errors = []
    for family, sockaddr in ctx.scratch.get("central.addrs", [])[:3]:
        where = f"{sockaddr[0]}:{port}"
        t0 = time.monotonic()
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(sockaddr)
            rtt = (time.monotonic() - t0) * 1000
            ctx.scratch["central.sockaddr"] = (family, sockaddr)
            return ok("central.tcp", _("TCP connect to {address} in {ms} ms").format(address=where,
                                                                                    ms=number(rtt, 0)))
        except ConnectionRefusedError:
            errors.append((_("TCP: connection refused to {address}").format(address=where),
                           _("is the central up on that port? is a firewall rejecting it?")))
        except TimeoutError:
            errors.append((_("TCP: no answer from {address} within {seconds} s").format(
                address=where, seconds=number(timeout, 1)),
                           _("a firewall drops the traffic, the uplink is down or the port is wrong")))
        except OSError as e:
            errors.append((_("TCP: {reason} to {address}").format(reason=e.strerror or e, address=where),
                           _("no route to the central: check the uplink (Wi-Fi/LTE/Ethernet) and the "
                             "default route (`ip route`)")))
    if errors:
        summary, remedy = errors[0]
    else:
        summary, remedy = _("TCP: no address for {host}").format(host=host), _("check DNS")
    detail = "\n".join(s for s, _ in errors[1:])
    return fail("central.tcp", summary, remedy, detail)


def _cert_time(text: str) -> float:
    return ssl.cert_time_to_seconds(text)


def check_tls(ctx: DiagContext) -> Result:
    scheme, host, port, _url = _target(ctx)
    if scheme != "https":
        return skip("central.tls", _("plain http:// URL: no TLS to check (use https:// in production)"))
    blocked = _blocked(ctx, "central.tls", "central.tcp")
    if blocked:
        return blocked
    assert ctx.cfg is not None
    cafile = ctx.cfg.central["ca_bundle"]
    try:
        tls = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        return fail("central.tls", _("TLS: cannot load CA bundle {path}: {reason}").format(path=cafile,
                                                                                          reason=e),
                    _("fix [central].ca_bundle (a PEM file from the city's operators)"))
    family, sockaddr = ctx.scratch["central.sockaddr"]
    now = ctx.wall()
    try:
        with socket.socket(family, socket.SOCK_STREAM) as raw:
            raw.settimeout(_timeout(ctx))
            raw.connect(sockaddr)
            with tls.wrap_socket(raw, server_hostname=host) as s:
                cert = s.getpeercert() or {}
                version = s.version()
    except ssl.SSLCertVerificationError as e:
        reason = e.verify_message or str(e)
        if e.verify_code in (9, 10):  # not yet valid / expired: judged by OUR clock
            return fail("central.tls", _("TLS: certificate {reason} for this node's clock ({time})").format(
                reason=reason, time=fmt_time(now)),
                        _("fix the clock first (see the clock check); if the clock is right, the central's "
                          "certificate must be renewed by the operators"))
        return fail("central.tls", _("TLS: certificate rejected: {reason}").format(reason=reason),
                    _("check the host name in [central].url and [central].ca_bundle; ask the operators for "
                      "their CA if they use a private one"))
    except (ssl.SSLError, OSError) as e:
        return fail("central.tls", _("TLS: handshake with {host}:{port} failed: {reason}").format(
            host=host, port=port, reason=e),
                    _("is this port serving HTTPS? (http:// vs https:// in [central].url)"))
    not_after = _cert_time(cert["notAfter"]) if "notAfter" in cert else None
    if not_after is not None and not_after - now < CERT_EXPIRY_WARN_S:
        return warn("central.tls", _("TLS {version}: certificate expires {time} (in {age})").format(
            version=version, time=fmt_time(not_after), age=fmt_age(not_after - now)),
                    _("tell the city's operators to renew the certificate"))
    if not_after:
        return ok("central.tls", _("TLS {version} with {host}, certificate valid until {time}").format(
            version=version, host=host, time=fmt_time(not_after)))
    return ok("central.tls", _("TLS {version} with {host}").format(version=version, host=host))


def check_auth(ctx: DiagContext) -> Result:
    blocked = _blocked(ctx, "central.auth", "central.tcp")
    if blocked:
        return blocked
    tls_prior = ctx.prior("central.tls")
    if tls_prior and tls_prior[0].status is Status.FAIL:
        return skip("central.auth", _("not checked: {check} did not pass").format(check="central.tls"))
    import requests

    from node import protocol
    from node.errors import KeyFileError
    from node.keyfile import load_key

    assert ctx.cfg is not None
    key_file = ctx.cfg.central["key_file"]
    try:
        key = load_key(key_file)
    except KeyFileError as e:
        return fail("central.auth", _("key: {problem}").format(problem=e),
                    _("install the node's key as the message says"))
    node_id = ctx.node_id or ""
    url = ctx.cfg.central["url"] + protocol.PING_PATH
    body = json.dumps({"node": node_id, "diag": True}).encode()
    sent_ms = int(ctx.wall() * 1000)
    headers = {"Content-Type": "application/json",
               **protocol.sign_request(key, "POST", protocol.PING_PATH, body, sent_ms, node_id=node_id)}
    verify: bool | str = ctx.cfg.central["ca_bundle"] or True
    t0 = time.monotonic()
    try:
        resp = requests.post(url, data=body, headers=headers, timeout=(_timeout(ctx), 3.0), verify=verify)
    except requests.Timeout:
        return fail("central.auth", _("HTTP: the central accepted the connection but did not answer "
                                      "{path} within 3 s").format(path=protocol.PING_PATH),
                    _("the receiver is overloaded or hung: tell the city's operators (send `streetnode "
                      "bundle`)"))
    except requests.RequestException as e:
        return fail("central.auth", _("HTTP: ping failed: {kind}: {reason}").format(kind=type(e).__name__,
                                                                                   reason=e),
                    _("the central accepted TCP but not HTTP: is the URL right (http:// vs https://)?"))
    rtt_ms = (time.monotonic() - t0) * 1000
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    code = answer.get("error") if isinstance(answer, dict) else None
    if resp.status_code == 200 and isinstance(answer, dict) and answer.get("ok"):
        server = protocol.server_time_ms(resp.headers, answer)
        offset_ms = server - (sent_ms + rtt_ms / 2) if server is not None else None
        ctx.scratch["central.offset_ms"] = offset_ms
        if offset_ms is not None:
            offset = number(-offset_ms / 1000, 1, sign=True)
            text = _("signed ping accepted for node {node}: round trip {ms} ms, node clock {offset} s vs "
                     "the central").format(node=node_id, ms=number(rtt_ms, 0), offset=offset)
        else:
            text = _("signed ping accepted for node {node}: round trip {ms} ms").format(
                node=node_id, ms=number(rtt_ms, 0))
        if offset_ms is not None and abs(offset_ms) > CLOCK_OFFSET_WARN_MS:
            return warn("central.auth", text, _("the node's clock is off: see the clock check; readings are "
                                                "corrected from the central's time while it is unsynced"))
        return ok("central.auth", text)
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    detail = f"HTTP {resp.status_code}: {message or resp.text[:200]}"
    if code == "unknown_node":
        return fail("central.auth", _("auth: the central does not know node {node!r}").format(node=node_id),
                    _("register it at the central: streetnode-central node add {node}, and copy the "
                      "printed key to {path}").format(node=node_id, path=key_file), detail)
    if code == "bad_signature":
        return fail("central.auth", _("auth: signature rejected: wrong key for this node"),
                    _("copy the key printed by `streetnode-central node add {node}` into {path} (chmod "
                      "600), then restart the service").format(node=node_id, path=key_file), detail)
    if code == "stale_timestamp":
        return fail("central.auth", _("auth: the central rejects the node's clock (timestamp too far off)"),
                    _("fix the clock (see the clock check): NTP or `sudo date -s` with the right UTC time"),
                    detail)
    if resp.status_code == 404:
        return fail("central.auth", _("HTTP 404 for {path}: not a streetnode central (or an old one)").format(
            path=protocol.PING_PATH), _("check [central].url; ask the operators for the receiver's URL"),
                    detail)
    return fail("central.auth", _("HTTP {status} from the central: {code}").format(
        status=resp.status_code, code=code or "error"),
                _("the central has a problem: tell the city's operators (send `streetnode bundle`)"), detail)
