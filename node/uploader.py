"""Upload buffered readings to the central: signed, gzip v1 batches over one requests.Session.

One *round* (`Uploader.run_round`) first sends the newest readings (the live
batch, so the city sees current flood depth and air quality at once after an
outage), then backfills oldest-first until the backlog is empty, the deadline
passes or an attempt fails in a way worth retrying later. Each answer is
classified by `node.upload_policy.classify`:

- 2xx: ack the batch (the receiver deduplicates by (node, epoch, seq), so a
  batch resent after a lost ack is stored exactly once);
- 408/429/5xx, connection errors, timeouts: release the batch and wait a
  full-jitter exponential backoff, never less than ``Retry-After``;
- 413: release and claim half as many readings; a single reading still too
  large is dead-lettered;
- 401 ``stale_timestamp``: learn the central's clock, re-sign, retry once;
  other 401s: release, back off and report an auth failure (never dead-letter:
  the data is fine, the key is not);
- other 4xx: dead-letter the batch (the buffer records the incident) and go on.

The uploader never touches drivers and the sampler never waits on it: the buffer
is the only link between them.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from node import __version__, protocol
from node.model import Batch
from node.upload_policy import Action, Backoff, Verdict, classify, server_time_ms

log = logging.getLogger("streetnode.uploader")

ALERT_HEALTH_KEY = "alert"  # health flag of a storm-alert batch (the protocol has no alert field)
_CLOCK_REPORT_MS = 1000  # on_clock_offset fires when the offset moves by more than this
_SHRINK = 0.9  # after an over-size encode, claim this fraction of what would have fit


class UploadBuffer(Protocol):
    """What the uploader needs of `node.buffer` (SqliteBuffer and MemoryBuffer both fit)."""

    def claim(self, max_readings: int, *, newest_first: bool = False) -> Batch | None: ...
    def ack(self, batch_id: int) -> None: ...
    def release(self, batch_id: int) -> None: ...
    def dead_letter(self, batch_id: int, reason: str) -> None: ...


@dataclass
class RoundResult:
    """What one upload round did; ``next_attempt_at`` (on the uploader's monotonic ``timer``) is
    when the next may start: a wall-clock step never stalls or hurries a backoff."""

    next_attempt_at: float
    batches: int = 0  # acked batches
    readings: int = 0  # readings in acked batches
    live_readings: int = 0  # of which sent newest-first in the live batch
    stored: int = 0  # as reported by the central
    duplicates: int = 0  # already stored (a resend after a lost ack)
    dead_lettered: int = 0  # batches the central refused for good
    dead_lettered_readings: int = 0
    splits: int = 0  # 413 answers and over-size encodes that made us claim fewer
    attempts: int = 0  # HTTP requests made (including re-signed retries)
    bytes_sent: int = 0  # request line + headers + body
    bytes_received: int = 0  # status line + headers + body
    backlog_empty: bool = False
    error: str | None = None  # the last failure of the round, one line
    alert: bool = False


_EMPTY, _SENT, _FAILED, _STOPPED = "empty", "sent", "failed", "stopped"


def _is_loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class Uploader:
    """``Uploader(buffer, url, key, node_id).run_round()`` from the agent's upload schedule."""

    def __init__(self, buffer: UploadBuffer, url: str, key: bytes, node_id: str, *,
                 max_batch_readings: int = 5000, max_batch_bytes: int = 512 * 1024,
                 live_readings: int = 500, connect_timeout: float = 5, read_timeout: float = 30,
                 ca_bundle: str | None = None, backoff_initial: float = 5, backoff_max: float = 600,
                 clock: Callable[[], float] = time.time, timer: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random,
                 health: Callable[[], Mapping[str, Any]] | None = None,
                 on_clock_offset: Callable[[int], None] | None = None,
                 session: requests.Session | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"central.url: expected an http:// or https:// URL, got {url!r}")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("central.url: plain http:// is only allowed to a loopback host; use https://")
        if not key:
            raise ValueError("key: expected the node key bytes, got an empty key")
        for name, value in (("max_batch_readings", max_batch_readings), ("live_readings", live_readings),
                            ("max_batch_bytes", max_batch_bytes)):
            if value < 1:
                raise ValueError(f"upload.{name}: expected a positive number, got {value}")
        self.buffer = buffer
        self.url = url.rstrip("/") + protocol.INGEST_PATH
        self.path = urlsplit(self.url).path
        self.node_id = node_id
        self.max_batch_readings = max_batch_readings
        self.max_batch_bytes = max_batch_bytes
        self.live_readings = live_readings
        self.timeout = (connect_timeout, read_timeout)
        self.verify: str | bool = ca_bundle or True  # TLS verification is never turned off
        self.on_clock_offset = on_clock_offset
        self.clock_offset_ms: int | None = None  # central time - local time, once learned
        self._key = key
        self._clock = clock  # wall time: signing, status times, learning the central's time
        self._timer = timer  # never steps: backoff, Retry-After and round deadlines
        self._health = health or dict
        self._backoff = Backoff(backoff_initial, backoff_max, rng)
        self._reported_offset: int | None = None
        self._last_signed_ms = 0
        self._clock_to_report: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None  # started by the first round
        self._next_attempt_at = 0.0
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxies/CA bundles/netrc from the environment
        # every header byte is paid for on a metered SIM, every round
        self._session.headers["User-Agent"] = f"streetnode/{__version__}"
        for name in ("Accept", "Connection"):  # */* and keep-alive are HTTP/1.1 defaults
            self._session.headers.pop(name, None)
        self._status: dict[str, Any] = {
            "last_attempt_at": None, "last_success_at": None, "last_error": None,
            "consecutive_failures": 0, "auth_failed": False, "bytes_sent": 0, "bytes_received": 0,
            "requests": 0, "readings_sent": 0, "batches_sent": 0, "dead_lettered": 0,
        }

    # ------------------------------------------------------------------ public
    def ready(self, now: float | None = None) -> bool:
        """True when no backoff or Retry-After holds the next round back."""
        return (self._timer() if now is None else now) >= self._next_attempt_at

    @property
    def next_attempt_at(self) -> float:
        return self._next_attempt_at

    def status(self) -> dict[str, Any]:
        """Counters and last outcomes for `streetnode status`."""
        wall_next = self._clock() + max(0.0, self._next_attempt_at - self._timer())
        return {**self._status, "next_attempt_at": wall_next,
                "clock_offset_ms": self.clock_offset_ms, "url": self.url}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._session.close()

    def run_round(self, deadline: float | None = None, *, alert: bool = False) -> RoundResult:
        """One round: the live batch newest-first, then oldest-first backfill.

        Stops when the backlog is empty, ``deadline`` (on ``timer``, monotonic)
        has passed, or an attempt failed with a retryable error. ``alert`` marks
        the live batch as a storm alert (health ``alert: true``).
        """
        res = RoundResult(next_attempt_at=self._timer(), alert=alert)
        outcome = self._send_live(res, alert=alert)
        if outcome == _SENT:
            outcome = self._backfill(res, deadline)
        res.backlog_empty = outcome == _EMPTY
        if outcome != _FAILED:
            self._next_attempt_at = res.next_attempt_at = self._timer()
        return res

    # ------------------------------------------------------------------ batches
    def _send_live(self, res: RoundResult, *, alert: bool) -> str:
        """The newest readings, one batch (halved on 413); returns _EMPTY, _SENT, _FAILED or _STOPPED."""
        n = self.live_readings
        while True:
            prep = self._prepare(res, n, newest_first=True, alert=alert)
            if prep is None:
                return _EMPTY
            verdict, answer = self._post(prep[1], res)
            self._report_clock()
            out = self._settle(res, prep[0], verdict, answer, live=True)
            if isinstance(out, str):
                return out
            n = out

    def _backfill(self, res: RoundResult, deadline: float | None) -> str:
        """Oldest-first batches, pipelined one deep: the next batch is claimed and encoded while the
        current one is in flight, and posted as soon as the current one is acknowledged (before the
        buffer's ack), so the central never waits for the node's SD card."""
        cap = self.max_batch_readings
        if self._deadline_passed(deadline):
            return _SENT
        cur = self._prepare(res, cap, newest_first=False)
        if cur is None:
            return _EMPTY
        unsettled = [cur[0]]
        future: concurrent.futures.Future[tuple[Verdict, Any]] | None = self._pool().submit(
            self._post, cur[1], res)
        try:
            while True:
                nxt = None if self._deadline_passed(deadline) else self._prepare(res, cap, newest_first=False)
                if nxt is not None:
                    unsettled.append(nxt[0])
                assert future is not None
                verdict, answer = future.result()
                future = None
                self._report_clock()
                if verdict.action is Action.ACK and nxt is not None:
                    future = self._pool().submit(self._post, nxt[1], res)
                out = self._settle(res, cur[0], verdict, answer, live=False)
                unsettled.remove(cur[0])
                if out == _SENT:  # acknowledged, or dead-lettered and the queue goes on
                    if nxt is None:
                        return _SENT if self._deadline_passed(deadline) else _EMPTY
                    cur = nxt
                    if future is None:
                        future = self._pool().submit(self._post, cur[1], res)
                    continue
                if nxt is not None:  # not posted: the current batch was not acknowledged
                    self.buffer.release(nxt[0].id)
                    unsettled.remove(nxt[0])
                if isinstance(out, str):
                    return out
                cap = out  # 413: smaller batches for the rest of the round
                cur = self._prepare(res, cap, newest_first=False)
                if cur is None:
                    return _EMPTY
                unsettled.append(cur[0])
                future = self._pool().submit(self._post, cur[1], res)
        except BaseException:
            if future is not None:
                concurrent.futures.wait([future])  # never leave a request running behind our back
            for batch in unsettled:
                self.buffer.release(batch.id)
            raise

    def _deadline_passed(self, deadline: float | None) -> bool:
        return deadline is not None and self._timer() >= deadline

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="streetnode-upload")
        return self._executor

    def _prepare(self, res: RoundResult, limit: int, *, newest_first: bool,
                 alert: bool = False) -> tuple[Batch, bytes] | None:
        """Claim up to ``limit`` readings and encode them within ``max_batch_bytes``; None when empty."""
        n = limit
        while True:
            batch = self.buffer.claim(n, newest_first=newest_first)
            if batch is None:
                return None
            count = len(batch.readings)
            if not count and not batch.gaps and not batch.incidents:
                self.buffer.ack(batch.id)
                return None
            try:
                body = self._encode(batch, alert=alert)
            except ValueError as e:  # ProtocolError: a poison batch must not block newer data
                self._dead_letter(res, batch, f"cannot encode: {e}")
                continue
            if len(body) > self.max_batch_bytes and count > 1:
                self.buffer.release(batch.id)
                n = max(1, min(count - 1, int(count * self.max_batch_bytes / len(body) * _SHRINK)))
                res.splits += 1
                continue
            return batch, body

    def _settle(self, res: RoundResult, batch: Batch, verdict: Verdict, answer: Any, *,
                live: bool) -> str | int:
        """Ack, release or dead-letter ``batch``: _SENT, _FAILED, _STOPPED, or how many readings to
        claim instead (413)."""
        count = len(batch.readings)
        action = verdict.action
        if action is Action.ACK:
            self.buffer.ack(batch.id)
            self._succeeded(res, batch, answer, live=live)
            return _SENT
        if action is Action.SPLIT and count > 1:
            self.buffer.release(batch.id)
            res.splits += 1
            log.info("central answered %s for %d readings; retrying with %d", verdict.reason, count,
                     count // 2)
            return count // 2
        if action in (Action.SPLIT, Action.DEAD_LETTER):
            self._dead_letter(res, batch, f"{verdict.reason}{_detail(answer)}")
            # a refused batch of only gaps/incidents leaves a new incident behind: end the round
            # rather than loop on it
            return _SENT if count else _STOPPED
        self.buffer.release(batch.id)
        self._failed(res, verdict)
        return _FAILED

    def _dead_letter(self, res: RoundResult, batch: Batch, reason: str) -> None:
        count = len(batch.readings)
        self.buffer.dead_letter(batch.id, reason)
        res.dead_lettered += 1
        res.dead_lettered_readings += count
        self._status["dead_lettered"] += 1
        self._status["last_error"] = res.error = f"batch rejected: {reason}"
        log.warning("batch %s (%d readings) dropped for good: %s", batch.id, count, reason)

    def _encode(self, batch: Batch, *, alert: bool) -> bytes:
        try:
            health = dict(self._health())
        except Exception as e:  # health is best effort; it never holds readings back
            log.warning("health snapshot failed: %s: %s", type(e).__name__, e)
            health = {}
        if alert:
            health[ALERT_HEALTH_KEY] = True
        return protocol.encode_batch(batch, health=health, sent_ms=self._now_ms())

    def _succeeded(self, res: RoundResult, batch: Batch, answer: Any, *, live: bool) -> None:
        count = len(batch.readings)
        res.batches += 1
        res.readings += count
        if live:
            res.live_readings += count
        if isinstance(answer, Mapping):
            res.stored += _int(answer.get("stored"))
            res.duplicates += _int(answer.get("duplicates"))
        self._backoff.reset()
        self._status.update(last_success_at=self._clock(), consecutive_failures=0, auth_failed=False,
                            last_error=None)
        self._status["readings_sent"] += count
        self._status["batches_sent"] += 1

    def _failed(self, res: RoundResult, verdict: Verdict) -> None:
        delay = self._backoff.next_delay(verdict.retry_after)
        self._next_attempt_at = res.next_attempt_at = self._timer() + delay
        auth = verdict.action in (Action.AUTH_FAILED, Action.CLOCK, Action.RESIGN)
        res.error = f"auth failed: {verdict.reason}" if auth else verdict.reason
        self._status.update(last_error=res.error, auth_failed=auth)
        self._status["consecutive_failures"] += 1
        log.log(logging.ERROR if auth else logging.WARNING, "upload failed: %s; next attempt in %.1f s",
                res.error, delay)

    # ------------------------------------------------------------------ HTTP
    def _now_ms(self) -> int:
        return int(self._clock() * 1000) + (self.clock_offset_ms or 0)

    def _post(self, body: bytes, res: RoundResult) -> tuple[Verdict, Any]:
        """POST once; after 401 stale_timestamp (clock learned) or replay, re-sign and POST once more."""
        verdict: Verdict = Verdict(Action.RETRY, "not sent")
        answer: Any = None
        for attempt in range(2):
            # a resend within the same millisecond must not repeat its signature (replay); a clock
            # corrected backwards simply starts a new sequence
            ts = self._now_ms()
            if 0 <= self._last_signed_ms - ts < 1000:
                ts = self._last_signed_ms + 1
            self._last_signed_ms = ts
            headers = dict(protocol.BODY_HEADERS)
            headers.update(protocol.sign_request(self._key, "POST", self.path, body, self._last_signed_ms,
                                                 node_id=self.node_id))
            t0 = self._clock()
            self._status["last_attempt_at"] = t0
            self._status["requests"] += 1
            res.attempts += 1
            try:
                r = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout,
                                       verify=self.verify, allow_redirects=False)
            except requests.RequestException as e:
                self._count_bytes(res, _request_bytes(self.url, headers, body), 0)
                return classify(None, {}, None, now=self._clock(),
                                network_error=describe_network_error(e, self.url)), None
            t1 = self._clock()
            self._count_bytes(res, _request_bytes(self.url, r.request.headers, body), _response_bytes(r))
            try:
                answer = r.json()
            except ValueError:
                answer = None
            self._learn_clock(r.headers, answer, (t0 + t1) / 2)
            verdict = classify(r.status_code, r.headers, answer, now=t1)
            if verdict.action in (Action.CLOCK, Action.RESIGN) and attempt == 0:
                log.info("central answered %s; re-signing (clock offset %s ms)", verdict.reason,
                         self.clock_offset_ms)
                continue
            break
        return verdict, answer

    def _count_bytes(self, res: RoundResult, sent: int, received: int) -> None:
        res.bytes_sent += sent
        res.bytes_received += received
        self._status["bytes_sent"] += sent
        self._status["bytes_received"] += received

    def _learn_clock(self, headers: Mapping[str, str], answer: Any, local_mid: float) -> None:
        """Update ``clock_offset_ms`` from the central's time in a response."""
        found = server_time_ms(headers, answer)
        if found is None:
            return
        server_ms, uncertainty = found
        offset = int(server_ms - local_mid * 1000)
        if self.clock_offset_ms is not None and uncertainty and \
                abs(offset - self.clock_offset_ms) <= uncertainty + _CLOCK_REPORT_MS:
            return  # a whole-second Date header cannot refine a better estimate
        self.clock_offset_ms = offset
        if self._reported_offset is None or abs(offset - self._reported_offset) > _CLOCK_REPORT_MS:
            self._reported_offset = offset
            self._clock_to_report = offset

    def _report_clock(self) -> None:
        """Call ``on_clock_offset`` in the caller's thread (the HTTP may run in the upload worker)."""
        offset, self._clock_to_report = self._clock_to_report, None
        if offset is not None:
            log.info("central clock offset %+d ms", offset)
            if self.on_clock_offset is not None:
                try:
                    self.on_clock_offset(offset)
                except Exception:  # the agent's business; uploads go on
                    log.exception("on_clock_offset(%d) failed", offset)


# ---------------------------------------------------------------------- helpers
def _int(v: Any) -> int:
    return v if type(v) is int else 0


def describe_network_error(exc: BaseException, url: str) -> str:
    """What went wrong on the way to the central, in words: the innermost cause, whole, on one line.

    requests wraps urllib3's MaxRetryError around NewConnectionError around the socket's
    error, and their texts repeat the object reprs ("<urllib3.connection.HTTPSConnection object
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
    if isinstance(exc, requests.Timeout):
        kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
        return f"no answer from {where} ({kind} timeout)"
    inner = chain[-1]
    text = " ".join(str(inner).split()) or type(inner).__name__
    return f"{type(inner).__name__} talking to {where}: {text}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, urllib3's ``.reason``, requests' ``args[0]``."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10 and all(e is not c for c in chain):
        chain.append(e)
        reason = getattr(e, "reason", None)
        wrapped = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        e = e.__cause__ or (reason if isinstance(reason, BaseException) else None) or wrapped or e.__context__
    return chain


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _detail(answer: Any) -> str:
    if isinstance(answer, Mapping):
        for k in ("message", "detail"):
            if isinstance(answer.get(k), str):
                return f": {answer[k][:200]}"
    return ""


def _request_bytes(url: str, headers: Mapping[str, str], body: bytes) -> int:
    """Bytes of the HTTP/1.1 request as http.client writes it (request line, Host, headers, body)."""
    parts = urlsplit(url)
    host = parts.netloc
    size = len(f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\n")
    size += sum(len(f"{k}: {v}\r\n".encode("latin-1", "replace")) for k, v in headers.items())
    return size + 2 + len(body)


def _response_bytes(r: requests.Response) -> int:
    """Bytes of the HTTP/1.1 response on the wire (status line, headers, body as sent)."""
    size = len(f"HTTP/1.1 {r.status_code} {r.reason}\r\n")
    raw_headers = getattr(r.raw, "headers", None) or r.headers
    size += sum(len(f"{k}: {v}\r\n".encode("latin-1", "replace")) for k, v in raw_headers.items())
    length = r.headers.get("Content-Length")
    return size + 2 + (int(length) if length and length.isdigit() else len(r.content))
