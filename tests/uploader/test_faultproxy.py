"""The fault-injecting proxy itself, against a tiny real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.support.faultproxy import FaultProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(body)
        out = json.dumps({"stored": len(self.server.received)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()
    t.join(5)


@pytest.fixture
def proxy(upstream):
    with FaultProxy(upstream.server_address[1], lifetime=30) as p:
        yield p


def test_pass_relays_over_one_keep_alive_connection(proxy, upstream):
    with requests.Session() as s:
        for i in range(3):
            r = s.post(proxy.url + "/x", data=b"a" * (i + 1), timeout=(2, 2))
            assert r.status_code == 200 and r.json() == {"stored": i + 1}
    assert upstream.received == [b"a", b"aa", b"aaa"]
    assert proxy.counts["requests"] == 3 and proxy.counts["connections"] == 1
    assert proxy.bytes_up > 6 and proxy.bytes_down > 0


def test_canned_429_with_retry_after_is_not_forwarded(proxy, upstream):
    proxy.set("status", count=1, status=429, retry_after="17")
    r = requests.post(proxy.url + "/x", data=b"z", timeout=(2, 2))
    assert r.status_code == 429 and r.headers["Retry-After"] == "17"
    assert upstream.received == []
    r = requests.post(proxy.url + "/x", data=b"z", timeout=(2, 2))  # count=1: back to pass
    assert r.status_code == 200 and upstream.received == [b"z"]


def test_canned_500_as_default_until_changed(proxy, upstream):
    proxy.set("status", status=503)
    for _ in range(2):
        assert requests.post(proxy.url, data=b"q", timeout=(2, 2)).status_code == 503
    proxy.set("pass")
    assert requests.post(proxy.url, data=b"q", timeout=(2, 2)).status_code == 200
    assert proxy.counts["status"] == 2 and len(upstream.received) == 1


def test_cut_loses_the_ack_after_upstream_acted(proxy, upstream):
    proxy.set("cut", count=1)
    with pytest.raises(requests.ConnectionError):
        requests.post(proxy.url, data=b"stored-but-unacked", timeout=(2, 2))
    assert upstream.received == [b"stored-but-unacked"]
    assert proxy.counts["upstream_responses"] == 1


def test_delay_past_client_timeout(proxy, upstream):
    proxy.set("delay", count=1, delay=1.5)
    with pytest.raises(requests.ReadTimeout):
        requests.post(proxy.url, data=b"slow", timeout=(2, 0.3))
    assert upstream.received == [b"slow"]


def test_refuse_resets_new_connections(proxy, upstream):
    proxy.set("refuse", count=2)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            requests.post(proxy.url, data=b"r", timeout=(2, 2))
    assert requests.post(proxy.url, data=b"r", timeout=(2, 2)).status_code == 200
    assert proxy.counts["refuse"] == 2 and upstream.received == [b"r"]


def test_blackhole_times_out_without_forwarding(proxy, upstream):
    proxy.set("blackhole", count=1)
    with pytest.raises(requests.ReadTimeout):
        requests.post(proxy.url, data=b"void", timeout=(2, 0.3))
    assert upstream.received == []


def test_unknown_mode_is_rejected(proxy):
    with pytest.raises(ValueError, match="mode: expected one of"):
        proxy.set("explode")


def test_proxy_stops_by_itself_after_its_lifetime(upstream):
    p = FaultProxy(upstream.server_address[1], lifetime=0.3).start()
    try:
        p._threads[0].join(3)
        assert not p._threads[0].is_alive()
        with pytest.raises(requests.ConnectionError):
            requests.post(p.url, data=b"late", timeout=(1, 1))
    finally:
        p.stop()
