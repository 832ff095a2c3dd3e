"""One MQTT connection of a sink (paho-mqtt): connect, publish a chunk at QoS 1, wait for every PUBACK.

A chunk either gets all its PUBACKs or counts as failed; after a failure the client is thrown away
and a new one connects (clean session), so nothing paho still holds from the old session is sent
behind our back. Publishing is paced by a token bucket (``max_messages_per_s``).
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.forward.config import SinkConfig
from central.forward.layouts import Message

MAX_INFLIGHT = 100


class LinkDown(Exception):
    """The broker is unreachable, refused us, or did not acknowledge in time."""


class TokenBucket:
    """``rate`` tokens per second, bursts up to ``burst``; ``take`` waits (stop-aware) for one."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._last = clock()

    def delay(self) -> float:
        """Seconds until a token is available (0: take it now)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    def take(self, stop: threading.Event) -> bool:
        while True:
            wait = self.delay()
            if wait == 0:
                return True
            if stop.wait(wait):
                return False


class MqttLink:
    def __init__(self, sink: SinkConfig, *, ack_timeout_s: float = 30.0) -> None:
        self.sink = sink
        self.ack_timeout_s = ack_timeout_s
        self.bucket = TokenBucket(sink.max_messages_per_s, max(1.0, sink.max_messages_per_s))
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._failed: str | None = None

    def _new_client(self) -> mqtt.Client:
        sink = self.sink
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=sink.client_id, clean_session=True,
                             protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        if sink.username is not None:
            client.username_pw_set(sink.username, sink.password)
        if sink.tls:
            client.tls_set(ca_certs=sink.ca_file, certfile=sink.cert_file, keyfile=sink.key_file,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _on_connect(self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object,
                    _props: object) -> None:
        if getattr(reason, "is_failure", False):
            self._failed = f"broker refused the connection: {reason}"
        self._connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object, reason: object,
                       _props: object) -> None:
        if self._failed is None:  # keep the first cause (a refused CONNACK comes before the close)
            self._failed = f"disconnected: {reason}"
        self._connected.set()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._failed is None

    def connect(self, timeout_s: float = 10.0) -> None:
        self.close()
        self._connected.clear()
        self._failed = None
        client = self._new_client()
        where = f"{self.sink.host}:{self.sink.port}"
        try:
            client.connect(self.sink.host, self.sink.port, keepalive=self.sink.keepalive_s)
        except (OSError, ssl.SSLError) as e:
            raise LinkDown(f"cannot connect to {where}: {e}") from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(timeout_s):
            self.close()
            raise LinkDown(f"no CONNACK from {where} within {timeout_s:g} s")
        if self._failed is not None:
            reason = self._failed
            self.close()
            raise LinkDown(f"{where}: {reason}")

    def publish_all(self, messages: list[Message], stop: threading.Event) -> bool:
        """Publish in order at QoS 1 and wait for every PUBACK; False if stopped first.

        Raises `LinkDown` when the connection fails or acknowledgements do not come in time.
        """
        client = self._client
        if client is None or self._failed is not None:
            raise LinkDown(self._failed or "not connected")
        infos = []
        for msg in messages:
            if not self.bucket.take(stop):
                return False
            info = client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS or self._failed is not None:
                raise LinkDown(self._failed or f"publish failed: {mqtt.error_string(info.rc)}")
            infos.append(info)
        deadline = time.monotonic() + self.ack_timeout_s
        for info in infos:
            while not info.is_published():
                if self._failed is not None:
                    raise LinkDown(self._failed)
                if stop.is_set():
                    return False
                if time.monotonic() > deadline:
                    raise LinkDown(f"no PUBACK within {self.ack_timeout_s:g} s")
                try:
                    info.wait_for_publish(0.05)
                except (RuntimeError, ValueError) as e:
                    raise LinkDown(str(e)) from None
        return True

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # a broken socket: there is nothing left to close cleanly
                pass
            client.loop_stop()
