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
        return skip(cid, f"not checked: {below} did not pass")
    return None


def check_not_configured(ctx: DiagContext) -> Result:
    if ctx.cfg is None:
        return skip("central", "not checked: the configuration is invalid")
    return warn("central", "not configured ([central].url unset): readings are only buffered on the node",
                "set [central] url and key_file to the values the city's operators gave you")


def check_dns(ctx: DiagContext) -> Result:
    _, host, port, _ = _target(ctx)
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    t0 = time.monotonic()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return fail("central.dns", f"DNS: cannot resolve {host}: {e.strerror}",
                    "check the uplink and the resolver (`resolvectl status`, /etc/resolv.conf); "
                    "or put the central's IP address in [central].url")
    addrs = list(dict.fromkeys(info[4][0] for info in infos))
    ctx.scratch["central.addrs"] = [(info[0], info[4]) for info in infos]
    if literal:
        return ok("central.dns", f"{host} is an IP address: no lookup needed")
    return ok("central.dns", f"{host} resolves to {', '.join(addrs[:4])} "
              f"({(time.monotonic() - t0) * 1000:.0f} ms)")


def check_tcp(ctx: DiagContext) -> Result:
    blocked = _blocked(ctx, "central.tcp", "central.dns")
    if blocked:
        return blocked
    _, host, port, _ = _target(ctx)
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
            return ok("central.tcp", f"TCP connect to {where} in {rtt:.0f} ms")
        except ConnectionRefusedError:
            errors.append((f"TCP: connection refused to {where}",
                           "is the central up on that port? is a firewall rejecting it?"))
        except TimeoutError:
            errors.append((f"TCP: no answer from {where} within {timeout:.1f} s",
                           "a firewall drops the traffic, the uplink is down or the port is wrong"))
        except OSError as e:
            errors.append((f"TCP: {e.strerror or e} to {where}",
                           "no route to the central: check the uplink (Wi-Fi/LTE/Ethernet) and "
                           "the default route (`ip route`)"))
    summary, remedy = errors[0] if errors else (f"TCP: no address for {host}", "check DNS")
    detail = "\n".join(s for s, _ in errors[1:])
    return fail("central.tcp", summary, remedy, detail)


def _cert_time(text: str) -> float:
    return ssl.cert_time_to_seconds(text)


def check_tls(ctx: DiagContext) -> Result:
    scheme, host, port, _ = _target(ctx)
    if scheme != "https":
        return skip("central.tls", "plain http:// URL: no TLS to check (use https:// in production)")
    blocked = _blocked(ctx, "central.tls", "central.tcp")
    if blocked:
        return blocked
    assert ctx.cfg is not None
    cafile = ctx.cfg.central["ca_bundle"]
    try:
        tls = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        return fail("central.tls", f"TLS: cannot load CA bundle {cafile}: {e}",
                    "fix [central].ca_bundle (a PEM file from the city's operators)")
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
            return fail("central.tls", f"TLS: certificate {reason} for this node's clock "
                        f"({fmt_time(now)})", "fix the clock first (see the clock check); if the clock "
                        "is right, the central's certificate must be renewed by the operators")
        return fail("central.tls", f"TLS: certificate rejected: {reason}",
                    "check the host name in [central].url and [central].ca_bundle; ask the operators "
                    "for their CA if they use a private one")
    except (ssl.SSLError, OSError) as e:
        return fail("central.tls", f"TLS: handshake with {host}:{port} failed: {e}",
                    "is this port serving HTTPS? (http:// vs https:// in [central].url)")
    not_after = _cert_time(cert["notAfter"]) if "notAfter" in cert else None
    if not_after is not None and not_after - now < CERT_EXPIRY_WARN_S:
        return warn("central.tls", f"TLS {version}: certificate expires {fmt_time(not_after)} "
                    f"(in {fmt_age(not_after - now)})", "tell the city's operators to renew the certificate")
    until = f", certificate valid until {fmt_time(not_after)}" if not_after else ""
    return ok("central.tls", f"TLS {version} with {host}{until}")


def check_auth(ctx: DiagContext) -> Result:
    blocked = _blocked(ctx, "central.auth", "central.tcp")
    if blocked:
        return blocked
    tls_prior = ctx.prior("central.tls")
    if tls_prior and tls_prior[0].status is Status.FAIL:
        return skip("central.auth", "not checked: central.tls did not pass")
    import requests

    from node import protocol
    from node.errors import KeyFileError
    from node.keyfile import load_key

    assert ctx.cfg is not None
    key_file = ctx.cfg.central["key_file"]
    try:
        key = load_key(key_file)
    except KeyFileError as e:
        return fail("central.auth", f"key: {e}", "install the node's key as the message says")
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
        return fail("central.auth", f"HTTP: the central accepted the connection but did not answer "
                    f"{protocol.PING_PATH} within 3 s", "the receiver is overloaded or hung: tell the "
                    "city's operators (send `streetnode bundle`)")
    except requests.RequestException as e:
        return fail("central.auth", f"HTTP: ping failed: {type(e).__name__}: {e}",
                    "the central accepted TCP but not HTTP: is the URL right (http:// vs https://)?")
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
        text = f"signed ping accepted for node {node_id}: round trip {rtt_ms:.0f} ms"
        if offset_ms is not None:
            text += f", node clock {(-offset_ms) / 1000:+.1f} s vs the central"
        if offset_ms is not None and abs(offset_ms) > CLOCK_OFFSET_WARN_MS:
            return warn("central.auth", text, "the node's clock is off: see the clock check; readings "
                        "are corrected from the central's time while it is unsynced")
        return ok("central.auth", text)
    message = answer.get("message", "") if isinstance(answer, dict) else ""
    detail = f"HTTP {resp.status_code}: {message or resp.text[:200]}"
    if code == "unknown_node":
        return fail("central.auth", f"auth: the central does not know node {node_id!r}",
                    f"register it at the central: streetnode-central node add {node_id}, and copy the "
                    f"printed key to {key_file}", detail)
    if code == "bad_signature":
        return fail("central.auth", "auth: signature rejected: wrong key for this node",
                    f"copy the key printed by `streetnode-central node add {node_id}` into {key_file} "
                    f"(chmod 600), then restart the service", detail)
    if code == "stale_timestamp":
        return fail("central.auth", "auth: the central rejects the node's clock (timestamp too far off)",
                    "fix the clock (see the clock check): NTP or `sudo date -s` with the right UTC time",
                    detail)
    if resp.status_code == 404:
        return fail("central.auth", f"HTTP 404 for {protocol.PING_PATH}: not a streetnode central "
                    "(or an old one)", "check [central].url; ask the operators for the receiver's URL",
                    detail)
    return fail("central.auth", f"HTTP {resp.status_code} from the central: {code or 'error'}",
                "the central has a problem: tell the city's operators (send `streetnode bundle`)", detail)
