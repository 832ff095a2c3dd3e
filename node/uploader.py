"""Upload buffered readings to the central: signed, gzip v1 batches, believed only on a receipt.

One *round* (`Uploader.run_round`) first sends the newest readings (the live batch, so the city
sees current flood depth and air quality at once after an outage), then backfills oldest-first
until the backlog is empty, the deadline passes or an attempt fails. Each answer becomes a
`node.upload_policy.Verdict`:

- ACK: a signed 2xx that is the receipt of exactly this batch (counts match): the buffer deletes
  it (the receiver deduplicates by (node, epoch, seq), so a resend after a lost ack is stored once);
- RETRY (no answer, 408/429/5xx) and PATH (unsigned, a redirect, an undocumented 4xx, a receipt for
  something else): release the batch, back off (full-jitter exponential, never less than
  ``Retry-After``); untrusted answers feed the `PathBreaker`, which after a few of them stops
  sending batches and probes with a signed ping until the central answers again; its opening and
  its end are recorded as incidents, so the city learns the path was broken and for how long;
- SPLIT (signed 413, signed 422 naming a reading): claim half as many; one reading still refused is
  dead-lettered (a ``rejected`` gap and an incident the central will see);
- REFUSE_RECORD / REFUSE_HEALTH (signed 422 naming a gap, an incident or a health key): that one
  record is replaced by a note the central accepts, or that key left out, and the batch goes again;
- CLOCK (signed 401 stale_timestamp): the answer carries the central's time; with a node clock
  (``clock_sync``) the batch is released and claimed again, so it is re-stamped (corrections
  applied) and re-signed, at most `MAX_RESTAMPS_PER_ROUND` times a round; without one, re-signed once.
  RESIGN (signed 401 replay): re-sign once; AUTH_FAILED: back off, report.

Clock: with ``clock_sync`` (the agent's), the uploader hands the central's time, as learned from
any signed answer, to the node's clock before it claims each batch, and the corrections land in the
buffer before the batch is encoded; a round that does not know the central's time yet starts with a
signed ping to learn it, so unsynced readings (a Pi that booted at 1970 offline) never leave on a
time the node knows to be wrong, and a clock that claims sync but is off is caught before any batch.

Every claim made in a round is settled (acked, dead-lettered) or released on every exit path,
exceptions included; the backoff also applies when the round ended by an exception.

The uploader never touches drivers and the sampler never waits on it: the buffer is the only link.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3

from node import protocol
from node.buffer.collision import Receipt, Settled
from node.clock import boot_ms
from node.memory import release_freed_memory
from node.model import Batch
from node.upload_policy import Action, Backoff, PathBreaker, Verdict, classify, refused_part
from node.upload_transport import Answer, Transport
from node.wire_repair import fit_health, fit_records

log = logging.getLogger("streetnode.uploader")

ALERT_HEALTH_KEY = "alert"  # health flag of a storm-alert batch (the protocol has no alert field)
_SHRINK = 0.9  # after an over-size encode, claim this fraction of what would have fit
MAX_REFUSALS_PER_ROUND = 20  # records replaced after a signed 422 before the round backs off
RELEASE_MEMORY_AFTER = 20_000  # readings moved in one round: then malloc_trim (node/memory.py)
MAX_RECORDS = 200  # gaps/incidents riding along with one batch (halved after a 413 of records alone)
MAX_RESTAMPS_PER_ROUND = 3  # batches re-stamped after a signed 401 stale_timestamp before backing off


class UploadBuffer(Protocol):
    """What the uploader needs of `node.buffer` (SqliteBuffer and MemoryBuffer both fit)."""

    def claim(self, max_readings: int, *, newest_first: bool = False,
              max_records: int = ...) -> Batch | None: ...
    def ack(self, batch_id: int) -> bool: ...
    def ack_receipt(self, batch_id: int, receipt: Receipt) -> Settled: ...
    def release(self, batch_id: int) -> bool: ...
    def dead_letter(self, batch_id: int, reason: str) -> bool: ...
    def refuse_record(self, batch_id: int, part: str, index: int, reason: str) -> bool: ...
    def record_incident(self, kind: str, detail: str, count: int | None = None) -> None: ...


@dataclass
class RoundResult:
    """What one upload round did; ``next_attempt_at`` (on the uploader's monotonic ``timer``) is
    when the next may start: a wall-clock step never stalls or hurries a backoff."""

    next_attempt_at: float
    started_at: float = 0.0  # on the uploader's timer
    batches: int = 0  # acked batches
    readings: int = 0  # readings in acked batches
    live_readings: int = 0  # of which sent newest-first in the live batch
    stored: int = 0  # as reported by the central
    duplicates: int = 0  # already stored (a resend after a lost ack)
    dead_lettered: int = 0  # batches (of one reading, after bisection) the central refused for good
    dead_lettered_readings: int = 0
    refused_records: int = 0  # gaps/incidents replaced after a signed 422 naming them
    splits: int = 0  # 413/422 answers and over-size encodes that made us claim fewer
    attempts: int = 0  # HTTP requests made (including re-signed retries and pings)
    bytes_sent: int = 0  # request line + headers + body
    bytes_received: int = 0  # status line + headers + body
    backlog_empty: bool = False
    deadline_reached: bool = False  # stopped by the deadline with readings still waiting
    probed: bool = False  # the breaker was open: this round only pinged
    restamped: int = 0  # batches claimed again after a 401 stale_timestamp (on the central's time)
    error: str | None = None  # the last failure of the round, one line
    alert: bool = False
    alert_sent: bool = False  # the live batch carrying the alert was acknowledged
    config: Any = None  # the desired configuration {"version", "hash"} of the last ack (docs/fleet.md)
    conflicts: int = 0  # readings the central already held under their (epoch, seq) with other content
    moved: int = 0  # of which put again in a new epoch (the rest are sent again: the list was cut)
    new_epoch: int | None = None  # the epoch the buffer started because of a collision (#20)


@dataclass(frozen=True)
class UploadSettings:
    """The ``[upload]`` keys the uploader applies between rounds (SIGHUP)."""

    max_batch_readings: int = 5000
    max_batch_bytes: int = 512 * 1024
    live_readings: int = 500
    backoff_initial: float = 5
    backoff_max: float = 600

    def check(self) -> None:
        for name in ("max_batch_readings", "live_readings", "max_batch_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"upload.{name}: expected a positive number, got {getattr(self, name)}")
        Backoff(self.backoff_initial, self.backoff_max, random.random)  # raises on a bad pair


_EMPTY, _SENT, _FAILED, _STOPPED = "empty", "sent", "failed", "stopped"


class Uploader:
    """``Uploader(buffer, url, key, node_id).run_round()`` from the agent's upload loop."""

    def __init__(self, buffer: UploadBuffer, url: str, key: bytes, node_id: str, *,
                 max_batch_readings: int = 5000, max_batch_bytes: int = 512 * 1024,
                 live_readings: int = 500, connect_timeout: float = 5, read_timeout: float = 30,
                 ca_bundle: str | None = None, backoff_initial: float = 5, backoff_max: float = 600,
                 breaker_threshold: int = 3,
                 clock: Callable[[], float] = time.time, timer: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random,
                 health: Callable[[], Mapping[str, Any]] | None = None,
                 on_clock_offset: Callable[[int], None] | None = None,
                 pool: urllib3.PoolManager | None = None, boot: Callable[[], int] = boot_ms,
                 clock_sync: Callable[[int | None], None] | None = None) -> None:
        self.transport = Transport(url, key, node_id, connect_timeout=connect_timeout,
                                   read_timeout=read_timeout, ca_bundle=ca_bundle, clock=clock,
                                   boot=boot, pool=pool)
        self.buffer = buffer
        self.url = self.transport.url(protocol.INGEST_PATH)
        self.node_id = node_id
        self.on_clock_offset = on_clock_offset
        # before each claim: the central's time minus the boot clock (None: not learned) to the node's
        # clock, whose corrections land in the buffer before the batch is encoded (node/agent.py)
        self._clock_sync = clock_sync
        self._clock = clock  # wall time: status times
        self._timer = timer  # never steps: backoff, Retry-After and round deadlines
        self._rng = rng
        self._health = health or dict
        self.breaker = PathBreaker(breaker_threshold)
        self.settings = UploadSettings()
        self._backoff = Backoff(backoff_initial, backoff_max, rng)
        self.configure(UploadSettings(max_batch_readings, max_batch_bytes, live_readings, backoff_initial,
                                      backoff_max))
        self._refused_health: set[str] = set()
        self._reported: set[str] = set()  # problems already recorded as incidents in this streak
        self._unsettled: dict[int, Batch] = {}  # claimed in this round, not yet acked/released
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None  # started by the first round
        self._next_attempt_at = 0.0
        self._records_cap = MAX_RECORDS
        self._status: dict[str, Any] = {
            "last_success_at": None, "last_error": None, "consecutive_failures": 0, "auth_failed": False,
            "readings_sent": 0, "batches_sent": 0, "dead_lettered": 0, "untrusted_answers": 0,
            "conflicts": 0, "rollbacks": 0, "identity_clashes": 0, "last_collision": None,
        }

    # ------------------------------------------------------------------ public
    def configure(self, settings: UploadSettings) -> None:
        """Apply new ``[upload]`` settings from the next round on (keeps backoff state)."""
        settings.check()
        self.settings = settings
        self.max_batch_readings = settings.max_batch_readings
        self.max_batch_bytes = settings.max_batch_bytes
        self.live_readings = settings.live_readings
        self._byte_cap = settings.max_batch_bytes  # lowered by 413 answers: a proxy's body limit
        failures = self._backoff.failures
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, self._rng)
        self._backoff.failures = failures

    def ready(self, now: float | None = None) -> bool:
        """True when no backoff or Retry-After holds the next round back."""
        return (self._timer() if now is None else now) >= self._next_attempt_at

    @property
    def next_attempt_at(self) -> float:
        return self._next_attempt_at

    @property
    def clock_offset_ms(self) -> int | None:
        return self.transport.clock_offset_ms

    @property
    def verify(self) -> str | bool:
        return self.transport.verify

    def status(self) -> dict[str, Any]:
        """Counters and last outcomes for `streetnode status`."""
        wall_next = self._clock() + max(0.0, self._next_attempt_at - self._timer())
        return {**self._status, **self.transport.counters,
                "last_attempt_at": self.transport.last_attempt_at, "next_attempt_at": wall_next,
                "clock_offset_ms": self.clock_offset_ms, "url": self.url, "path": self.breaker.state,
                "path_problem": self.breaker.last_problem}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.transport.close()

    def run_round(self, deadline: float | None = None, *, alert: bool = False) -> RoundResult:
        """One round: the live batch newest-first, then oldest-first backfill.

        Stops when the backlog is empty, ``deadline`` (on ``timer``, monotonic) has passed, or an
        attempt failed. ``alert`` marks the live batch as a storm alert (health ``alert: true``).
        While the path breaker is open the round only probes with a signed ping.
        """
        res = RoundResult(next_attempt_at=self._timer(), started_at=self._timer(), alert=alert)
        sent0 = dict(self.transport.counters)
        self._records_cap = MAX_RECORDS
        try:
            if self.breaker.open:
                outcome = self._probe(res)
            elif self._clock_sync is not None and self.transport.central_base_ms is None:
                outcome = self._learn_time(res)
            else:
                outcome = _SENT
            if outcome == _SENT:
                outcome = self._send_live(res, alert=alert)
            if outcome == _SENT:
                outcome = self._backfill(res, deadline)
        except BaseException as e:
            if isinstance(e, Exception):  # a bug or an OS surprise: no tight loop of rounds
                # (trusted: not the path's fault, so the breaker does not count it)
                self._failed(res, Verdict(Action.RETRY, f"{type(e).__name__}: {e}", trusted=True))
            raise
        finally:
            self._release_unsettled()
            counters = self.transport.counters
            res.bytes_sent = counters["bytes_sent"] - sent0["bytes_sent"]
            res.bytes_received = counters["bytes_received"] - sent0["bytes_received"]
            res.attempts = counters["requests"] - sent0["requests"]
        res.backlog_empty = outcome == _EMPTY
        res.deadline_reached = outcome == _SENT and self._deadline_passed(deadline)
        if outcome != _FAILED:
            self._next_attempt_at = res.next_attempt_at = self._timer()
        if res.readings >= RELEASE_MEMORY_AFTER:  # a drain's batches: give their memory back (#22)
            release_freed_memory()
        return res

    # ------------------------------------------------------------------ the breaker's probe
    def _probe(self, res: RoundResult) -> str:
        res.probed = True
        answer = self.transport.ping()
        self._report_clock()
        if answer.signed:
            log.info("central answered the probe; sending batches again")
            self.breaker.probe_answered()
            return _SENT
        verdict = classify(answer.status, answer.headers, answer.body, signed=False, now=self._now_s(),
                           network_error=answer.error, summary=answer.summary)
        self._failed(res, verdict)
        return _FAILED

    def _learn_time(self, res: RoundResult) -> str:
        """The central's time is not known yet: a signed ping learns it before any batch is encoded
        (any signed answer carries it, a 401 stale_timestamp too)."""
        answer = self.transport.ping()
        self._report_clock()
        if answer.signed:
            self._path_trusted()
            return _SENT
        verdict = classify(answer.status, answer.headers, answer.body, signed=False, now=self._now_s(),
                           network_error=answer.error, summary=answer.summary)
        self._failed(res, verdict)
        return _FAILED

    def _sync_clock(self) -> None:
        """Before a claim: the central's time to the node's clock; its corrections land in the buffer."""
        self._report_clock()
        if self._clock_sync is None:
            return
        try:
            self._clock_sync(self.transport.central_base_ms)
        except Exception:  # the agent's business: the batch goes with the stamps it has (flagged)
            log.exception("clock correction before the batch failed")

    # ------------------------------------------------------------------ batches
    def _send_live(self, res: RoundResult, *, alert: bool) -> str:
        """The newest readings, one batch (halved on refusal); _EMPTY, _SENT, _FAILED or _STOPPED."""
        n = self.live_readings
        refusals = 0
        while True:
            prep = self._prepare(res, n, newest_first=True, alert=alert)
            if prep is None:
                return _EMPTY
            verdict, answer = self._post(prep[0], prep[1])
            self._report_clock()
            out = self._settle(res, prep[0], prep[1], verdict, answer, live=True, alert=alert)
            if isinstance(out, str):
                return out
            refusals += verdict.action in (Action.REFUSE_RECORD, Action.REFUSE_HEALTH)
            if refusals > MAX_REFUSALS_PER_ROUND:
                return self._too_many_refusals(res, verdict)
            n = out

    def _backfill(self, res: RoundResult, deadline: float | None) -> str:
        """Oldest-first batches, pipelined one deep: the next batch is claimed and encoded while the
        current one is in flight, and posted as soon as the current one is acknowledged (before the
        buffer's ack), so the central never waits for the node's SD card."""
        cap = self.max_batch_readings
        refusals = 0
        if self._deadline_passed(deadline):
            return _SENT
        cur = self._prepare(res, cap, newest_first=False)
        if cur is None:
            return _EMPTY
        future: concurrent.futures.Future[tuple[Verdict, Answer]] | None = self._pool().submit(
            self._post, *cur)
        try:
            while True:
                nxt = None if self._deadline_passed(deadline) else self._prepare(res, cap, newest_first=False)
                assert future is not None
                verdict, answer = future.result()
                future = None
                self._report_clock()
                if verdict.action is Action.ACK and nxt is not None:
                    future = self._pool().submit(self._post, *nxt)
                out = self._settle(res, cur[0], cur[1], verdict, answer, live=False)
                if out == _SENT:  # acknowledged, or dead-lettered and the queue goes on
                    if nxt is None:
                        return _SENT if self._deadline_passed(deadline) else _EMPTY
                    cur = nxt
                    if future is None:
                        future = self._pool().submit(self._post, *cur)
                    continue
                if nxt is not None:  # not posted: the current batch was not acknowledged
                    self._release(nxt[0])
                if isinstance(out, str):
                    return out
                refusals += verdict.action in (Action.REFUSE_RECORD, Action.REFUSE_HEALTH)
                if refusals > MAX_REFUSALS_PER_ROUND:
                    return self._too_many_refusals(res, verdict)
                cap = out  # smaller batches for the rest of the round
                cur = self._prepare(res, cap, newest_first=False)
                if cur is None:
                    return _EMPTY
                future = self._pool().submit(self._post, *cur)
        finally:
            if future is not None:
                concurrent.futures.wait([future])  # never leave a request running behind our back

    def _deadline_passed(self, deadline: float | None) -> bool:
        return deadline is not None and self._timer() >= deadline

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="streetnode-upload")
        return self._executor

    def _prepare(self, res: RoundResult, limit: int, *, newest_first: bool,
                 alert: bool = False) -> tuple[Batch, bytes] | None:
        """Claim up to ``limit`` readings and encode them within ``max_batch_bytes``; None when empty.
        Clock corrections learned so far are applied first (`_sync_clock`)."""
        self._sync_clock()
        n = limit
        while True:
            batch = self.buffer.claim(n, newest_first=newest_first, max_records=self._records_cap)
            if batch is None:
                return None
            self._unsettled[batch.id] = batch
            count = len(batch.readings)
            if not count and not batch.gaps and not batch.incidents:
                self._ack(batch)
                return None
            try:
                body = self._encode(batch, alert=alert)
            except ValueError as e:  # ProtocolError: bisect to the reading that cannot be encoded
                if count > 1:
                    self._release(batch)
                    n = count // 2
                    continue
                self._dead_letter(res, batch, f"cannot encode: {e}")
                continue
            cap_bytes = min(self.max_batch_bytes, self._byte_cap)
            if len(body) > cap_bytes and count > 1:
                self._release(batch)
                n = max(1, min(count - 1, int(count * cap_bytes / len(body) * _SHRINK)))
                res.splits += 1
                continue
            return batch, body

    def _settle(self, res: RoundResult, batch: Batch, body: bytes, verdict: Verdict, answer: Answer, *,
                live: bool, alert: bool = False) -> str | int:
        """Act on one verdict: _SENT, _FAILED, _STOPPED, or how many readings to claim next."""
        count = len(batch.readings)
        action = verdict.action
        if verdict.trusted:
            self._path_trusted()
        if action is Action.ACK:
            if not self._succeeded(res, batch, answer.body, live=live):  # acknowledges it by the receipt
                return _FAILED
            res.alert_sent = res.alert_sent or (live and alert)
            return _SENT
        if action is Action.SPLIT:
            res.splits += 1
            if verdict.error_code == "too_large" or answer.status == 413:
                self._byte_cap = min(self._byte_cap, max(1024, len(body) - 1))
            if count > 1:
                self._release(batch)
                log.info("central answered %s for %d readings; retrying with %d", verdict.reason, count,
                         count // 2)
                return count // 2
            if count == 1 and verdict.trusted:  # the one reading our central refuses: a gap it will see
                self._dead_letter(res, batch, verdict.reason)
                return _SENT
            if count == 0 and len(batch.gaps) + len(batch.incidents) > 1:  # records alone too large
                self._release(batch)
                self._records_cap = max(1, (len(batch.gaps) + len(batch.incidents)) // 2)
                return 1
        if action is Action.CLOCK and self._clock_sync is not None and \
                res.restamped < MAX_RESTAMPS_PER_ROUND:
            res.restamped += 1
            self._release(batch)  # claimed again on the central's time: re-stamped, not only re-signed
            log.info("central answered %s; batch %s goes again on the central's time (offset %s ms)",
                     verdict.reason, batch.id, self.clock_offset_ms)
            return max(count, 1)
        if action is Action.REFUSE_RECORD and self._refuse_record(res, batch, verdict):
            return max(count, 1)
        if action is Action.REFUSE_HEALTH:
            self._refuse_health(verdict)
            self._release(batch)
            return max(count, 1)
        self._release(batch)
        self._failed(res, verdict)
        return _FAILED

    def _refuse_record(self, res: RoundResult, batch: Batch, verdict: Verdict) -> bool:
        part = refused_part(verdict.field)
        assert part is not None and isinstance(part[1], int)
        kind, index = part[0], part[1]
        records = batch.gaps if kind == "gap" else batch.incidents
        if index >= len(records) or not self.buffer.refuse_record(batch.id, kind, index, verdict.reason):
            return False
        self._release(batch)
        res.refused_records += 1
        log.warning("central refused %s %d of batch %s (%s); replaced it with a note it accepts", kind,
                    index, batch.id, verdict.reason)
        return True

    def _refuse_health(self, verdict: Verdict) -> None:
        part = refused_part(verdict.field)
        key = str(part[1]) if part else ""
        if key and key not in self._refused_health:
            self._refused_health.add(key)
            self.buffer.record_incident("health_refused", f"health key {key!r} left out: {verdict.reason}")
            log.warning("central refused health key %r (%s); sending without it", key, verdict.reason)

    def _too_many_refusals(self, res: RoundResult, verdict: Verdict) -> str:
        self._failed(res, Verdict(Action.RETRY, f"more than {MAX_REFUSALS_PER_ROUND} records refused "
                                                f"in one round (last: {verdict.reason})"))
        return _FAILED

    # ------------------------------------------------------------------ claim bookkeeping
    def _ack(self, batch: Batch) -> None:
        self._unsettled.pop(batch.id, None)
        self.buffer.ack(batch.id)

    def _release(self, batch: Batch) -> None:
        self._unsettled.pop(batch.id, None)
        self.buffer.release(batch.id)

    def _release_unsettled(self) -> None:
        """Every claim of the round that was neither settled nor released: give it back."""
        for batch_id in list(self._unsettled):
            self._unsettled.pop(batch_id, None)
            try:
                self.buffer.release(batch_id)
            except Exception:  # the buffer's lock or disk; the claim dies with the process anyway
                log.exception("releasing batch %s failed", batch_id)

    def _dead_letter(self, res: RoundResult, batch: Batch, reason: str) -> None:
        count = len(batch.readings)
        self._unsettled.pop(batch.id, None)
        self.buffer.dead_letter(batch.id, reason)
        res.dead_lettered += 1
        res.dead_lettered_readings += count
        self._status["dead_lettered"] += 1
        self._status["last_error"] = res.error = f"batch rejected: {reason}"
        log.warning("batch %s (%d readings) refused for good, recorded as a gap: %s", batch.id, count, reason)

    def _encode(self, batch: Batch, *, alert: bool) -> bytes:
        try:
            health = dict(self._health())
        except Exception as e:  # health is best effort; it never holds readings back
            log.warning("health snapshot failed: %s: %s", type(e).__name__, e)
            health = {}
        if alert:
            health[ALERT_HEALTH_KEY] = True
        return protocol.encode_batch(fit_records(batch), health=fit_health(health, self._refused_health),
                                     sent_ms=self.transport.now_ms())

    # ------------------------------------------------------------------ outcomes
    def _succeeded(self, res: RoundResult, batch: Batch, answer: Any, *, live: bool) -> bool:
        """Acknowledge the batch through its receipt; False (batch kept, round failed) when the receipt
        fields are malformed: what the central holds is then unknown, so nothing is deleted."""
        try:
            receipt = Receipt.from_answer(answer)
        except protocol.ProtocolError as e:
            self._release(batch)
            self._failed(res, Verdict(Action.RETRY, f"HTTP 200 receipt unreadable: {e}", trusted=True))
            return False
        self._unsettled.pop(batch.id, None)
        settled = self.buffer.ack_receipt(batch.id, receipt)  # conflicts: re-put, new epoch (#20)
        self._note_collision(res, batch, receipt, settled)
        count = len(batch.readings) - settled.released
        res.batches += 1
        res.readings += count
        if live:
            res.live_readings += count
        if isinstance(answer, Mapping):
            res.stored += answer.get("stored", 0)
            res.duplicates += answer.get("duplicates", 0)
            res.config = answer.get("config")
        self._backoff.reset()
        self._reported.clear()
        self._status.update(last_success_at=self._clock(), consecutive_failures=0, auth_failed=False,
                            last_error=None)
        self._status["readings_sent"] += count
        self._status["batches_sent"] += 1
        return True

    def _note_collision(self, res: RoundResult, batch: Batch, receipt: Receipt, settled: Settled) -> None:
        """Count what the central's receipt said about our numbering, for the round and `status`."""
        res.conflicts += receipt.conflicts
        res.moved += settled.moved
        self._status["conflicts"] += receipt.conflicts
        if settled.new_epoch is None:
            return
        res.new_epoch = settled.new_epoch
        key = "rollbacks" if settled.kind == "buffer_rollback" else "identity_clashes"
        self._status[key] += 1
        self._status["last_collision"] = {"at": self._clock(), "kind": settled.kind,
                                          "epoch": batch.epoch, "new_epoch": settled.new_epoch,
                                          "conflicts": receipt.conflicts, "high_seq": receipt.high_seq,
                                          "moved": settled.moved}
        log.error("the central holds other readings under our numbers (%s): new epoch %d, %d readings "
                  "put again there", settled.kind, settled.new_epoch, settled.moved)

    def _failed(self, res: RoundResult, verdict: Verdict) -> None:
        delay = self._backoff.next_delay(verdict.retry_after)
        self._next_attempt_at = res.next_attempt_at = self._timer() + delay
        auth = verdict.action in (Action.AUTH_FAILED, Action.CLOCK, Action.RESIGN)
        res.error = f"auth failed: {verdict.reason}" if auth else verdict.reason
        self._status.update(last_error=res.error, auth_failed=auth)
        self._status["consecutive_failures"] += 1
        if verdict.incident is not None and verdict.reason not in self._reported:
            self._reported.add(verdict.reason)  # once per failure streak, not once per round
            self.buffer.record_incident(verdict.incident, f"{verdict.reason}; the batch is kept and resent")
        if not verdict.trusted:
            self._path_untrusted(verdict.reason)
        log.log(logging.ERROR if auth else logging.WARNING, "upload failed: %s; next attempt in %.1f s",
                res.error, delay)

    def _path_untrusted(self, problem: str) -> None:
        self._status["untrusted_answers"] += 1
        if self.breaker.untrusted_answer(problem, self._timer()):
            detail = (f"{self.breaker.untrusted} answers in a row from {self.url} carried no valid receipt "
                      f"of our central (last: {problem}); every reading is kept, batches stop and a "
                      "signed ping probes the path with backoff")
            log.error("upload path broken: %s", detail)
            self.buffer.record_incident("upload_path", detail, self.breaker.untrusted)

    def _path_trusted(self) -> None:
        untrusted, problem = self.breaker.untrusted, self.breaker.last_problem
        opened = self.breaker.trusted_answer()
        if opened is not None:
            seconds = self._timer() - opened
            detail = (f"our central answers again after {seconds:.0f} s and {untrusted} untrusted answers "
                      f"(last: {problem})")
            log.warning("upload path recovered: %s", detail)
            self.buffer.record_incident("upload_path_recovered", detail, untrusted)

    # ------------------------------------------------------------------ HTTP
    def _now_s(self) -> float:
        return self.transport.now_ms() / 1000

    def _post(self, batch: Batch, body: bytes) -> tuple[Verdict, Answer]:
        """POST once; after a signed replay, re-sign once. After a signed 401 stale_timestamp (the
        central's time learned) the batch is re-stamped by `_settle` when a node clock is attached,
        else re-signed once here."""
        expect = (batch.id, batch.epoch, len(batch.readings))
        for attempt in range(2):
            answer = self.transport.post(protocol.INGEST_PATH, body)
            verdict = classify(answer.status, answer.headers, answer.body, signed=answer.signed,
                               now=self._now_s(), network_error=answer.error, summary=answer.summary,
                               expect=expect)
            resign = verdict.action is Action.RESIGN or (verdict.action is Action.CLOCK
                                                          and self._clock_sync is None)
            if resign and attempt == 0:
                log.info("central answered %s; re-signing (clock offset %s ms)", verdict.reason,
                         self.clock_offset_ms)
                continue
            break
        return verdict, answer

    def _report_clock(self) -> None:
        """Call ``on_clock_offset`` in the caller's thread (the HTTP may run in the upload worker)."""
        offset = self.transport.take_offset_report()
        if offset is not None:
            log.info("central clock offset %+d ms", offset)
            if self.on_clock_offset is not None:
                try:
                    self.on_clock_offset(offset)
                except Exception:  # the agent's business; uploads go on
                    log.exception("on_clock_offset(%d) failed", offset)
