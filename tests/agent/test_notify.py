"""sd_notify against a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import socket

from node.notify import Notifier, watchdog_interval_s


def _receiver(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s


def test_messages_arrive_as_datagrams(tmp_path):
    path = str(tmp_path / "notify.sock")
    rx = _receiver(path)
    n = Notifier(path)
    assert n.ready() and n.watchdog() and n.status("backlog 3\nlast upload ok") and n.stopping()
    got = [rx.recv(4096).decode() for _ in range(4)]
    assert got == ["READY=1", "WATCHDOG=1", "STATUS=backlog 3 last upload ok", "STOPPING=1"]
    n.close()
    rx.close()


def test_abstract_socket_address():
    name = f"streetnode-test-{os.getpid()}"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind("\0" + name)
    rx.settimeout(2)
    assert Notifier("@" + name).ready()
    assert rx.recv(100) == b"READY=1"
    rx.close()


def test_no_socket_is_a_quiet_no_op(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier().ready() is False
    assert Notifier(str(tmp_path / "gone.sock")).ready() is False  # receiver gone: no exception


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval_s() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval_s() is None


def test_a_receiver_that_never_reads_cannot_block_the_sender(tmp_path):
    path = str(tmp_path / "full.sock")
    rx = _receiver(path)
    n = Notifier(path)
    results = [n.watchdog() for _ in range(5000)]  # far beyond any datagram queue
    assert results[0] is True and results[-1] is False
    rx.close()
