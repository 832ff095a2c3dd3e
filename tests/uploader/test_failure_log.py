"""Issue #10: an upload failure is one log line with the whole cause; status clears it on success."""

from __future__ import annotations

import logging
import re
import socket

from node.uploader import Uploader
from tests.uploader.conftest import NODE, fill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_one_line_naming_host_and_port(buf, caplog):
    port = free_port()
    fill(buf, 2)
    up = Uploader(buf, f"http://127.0.0.1:{port}", b"k" * 32, NODE, backoff_initial=1, connect_timeout=2)
    with caplog.at_level(logging.INFO):
        res = up.run_round()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    expected = rf"upload failed: connection refused by 127\.0\.0\.1:{port}; next attempt in [01]\.\d s"
    assert re.fullmatch(expected, lines[0]), lines
    assert res.error == f"connection refused by 127.0.0.1:{port}"
    assert up.status()["last_error"] == res.error


def test_unresolvable_host_names_the_host(buf, caplog):
    fill(buf, 1)
    up = Uploader(buf, "https://central.invalid", b"k" * 32, NODE, connect_timeout=2)
    with caplog.at_level(logging.WARNING):
        res = up.run_round()
    assert res.error.startswith("cannot resolve central.invalid (DNS: "), res.error
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_success_clears_the_last_error(buf, central, proxy):
    now = [1000.0]
    fill(buf, 2)
    up = Uploader(buf, proxy.url, central.key, NODE, backoff_initial=1, timer=lambda: now[0])
    proxy.set("status", count=1, status=503)
    first = up.run_round()
    assert first.error and up.status()["last_error"] == first.error
    now[0] += 60  # past the backoff
    res = up.run_round()
    assert res.error is None and res.readings == 10, res
    assert up.status()["last_error"] is None
