"""MQTT helpers for the forwarder tests: our own Mosquitto process, and a recording subscriber."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SHARED = ("127.0.0.1", 1883)  # the machine's Mosquitto: unique topic prefixes only, never stopped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class OwnBroker:
    """``mosquitto -c <conf>`` on a free loopback port, persistent, so a queued session survives a restart."""

    def __init__(self, directory: Path, *, listener: str = "allow_anonymous true\n") -> None:
        """``listener``: the settings of the one listener (default: plain, anonymous)."""
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = directory / "mosquitto.conf"
        # 'user': started as root, mosquitto would switch to the 'mosquitto' user and could not write
        # its persistence file or log in our private temp directory
        self.conf.write_text(
            f"user {getpass.getuser()}\n"
            f"per_listener_settings true\nlistener {self.port} 127.0.0.1\n{listener}persistence true\n"
            f"persistence_location {directory}/\nmax_queued_messages 0\nmax_inflight_messages 0\n"
            f"log_dest file {directory}/mosquitto.log\n")

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(timeout=20)
        self.proc = None


class Recorder:
    """A paho subscriber keeping every message (topic, payload) in arrival order.

    A persistent session (fixed client id, clean_session=False) and QoS 1: what is published while
    it is disconnected (broker restart) is queued for it by the broker.
    """

    def __init__(self, port: int, topics: list[str], *, persistent: bool = False) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex[:10]}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_connect(self, client, _u, _f, _rc, _p) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _c, _u, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout_s: float) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.snapshot()
            if predicate(got):
                return got
            time.sleep(0.1)
        return self.snapshot()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
