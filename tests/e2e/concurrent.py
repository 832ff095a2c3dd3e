"""Concurrent overlapping batches against a real ``streetnode-central serve`` (#20, PostgreSQL).

Several nodes send signed batches at once, three at a time each, to a central of several receiver
processes (``--workers``: each takes one batch of a node at a time, so batches of one node meet in
the database). Each batch is a window of 50 seqs of its node that overlaps other windows (resends
of one reading have the same content: duplicates, never conflicts); a window meets the node's
channels in its own rotated order, so ingest transactions upsert the same channel rows in
different orders (what deadlocked on PostgreSQL, issue #20).

Then: every reading of every batch answered ``200`` is stored with its content; the batches not
answered 200 are sent again (as a node would) until they are, and then every reading sent is
stored exactly once. Every 5xx has our JSON error shape with no database text in it, and the
central's log has a line for it.

``python -m tests.e2e.concurrent [--requests 400] [--db sqlite]`` prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from node import protocol
from node.model import Batch, Reading
from tests.e2e.chaos import CentralProcess

WINDOW = 50
LANES = 3  # batches of one node in flight at once
DB_WORDS = re.compile(r"deadlock|relation|psycopg|sqlite|transaction|constraint|SELECT|INSERT", re.I)


@dataclass
class ConcurrentFigures:
    db: str = "postgresql"
    nodes: int = 0
    requests: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # "200" / "503 overloaded" / ...
    server_errors: int = 0
    db_text_in_body: int = 0
    not_our_shape: int = 0
    logged_5xx_lines: int = 0  # 5xx the central's log accounts for (lines, plus "(N more ...)" sums)
    acknowledged: int = 0  # distinct readings in batches answered 200 (first round)
    sent: int = 0  # distinct readings sent
    stored: int = 0
    lost: int = 0
    changed: int = 0
    duplicates: int = 0
    retry_rounds: int = 0
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        answers = ", ".join(f"{k} {v}" for k, v in sorted(self.answers.items()))
        return (f"concurrent   {self.db:<10} {self.requests} requests of {self.nodes} nodes ({answers});"
                f" 5xx {self.server_errors}: with database text {self.db_text_in_body}, not our shape"
                f" {self.not_our_shape}, central log lines {self.logged_5xx_lines};"
                f" acknowledged {self.acknowledged}, sent {self.sent}, stored {self.stored},"
                f" LOST {self.lost}, changed {self.changed}, duplicates {self.duplicates}"
                f" [{self.seconds:.0f} s]")


def _reading(node_no: int, seq: int) -> Reading:
    # stride 7 over 24 channels: windows starting elsewhere meet the channels in a rotated order
    channel = f"m{(seq * 7) % 24}.level_c"
    value = round(node_no * 100 + (seq * 37 % 1000) / 10, 1)
    return Reading(seq, channel, value, 0, 1_764_000_000_000 + seq * 1000, 10_000 + seq * 1000, "conc-boot")


def _batch(node: str, node_no: int, start: int, rng: random.Random) -> Batch:
    readings = [_reading(node_no, s) for s in range(start, start + WINDOW)]
    rng.shuffle(readings)
    readings.sort(key=lambda r: r.seq)
    return Batch(1, node, 1, readings)


def _post(base: str, node: str, key: bytes, batch: Batch) -> tuple[int, str]:
    body = protocol.encode_batch(batch, health={"backlog_readings": 0}, sent_ms=int(time.time() * 1000))
    headers = dict(protocol.BODY_HEADERS)
    headers.update(protocol.sign_request(key, "POST", protocol.INGEST_PATH, body, int(time.time() * 1000),
                                         node_id=node))
    try:
        r = requests.post(base + protocol.INGEST_PATH, data=body,
                          headers={k: v for k, v in headers.items() if v is not None}, timeout=60)
    except requests.RequestException as e:
        return 0, str(e)
    return r.status_code, r.text


def run_concurrent(workdir: Path, db_url: str, *, db_label: str = "postgresql", n_requests: int = 400,
                   n_nodes: int = 8, workers: int = 4, seed: int = 0) -> ConcurrentFigures:
    from central.store import open_store

    t0 = time.monotonic()
    rng = random.Random(seed)
    fig = ConcurrentFigures(db=db_label, nodes=n_nodes, requests=n_requests)
    workdir.mkdir(parents=True, exist_ok=True)
    nodes = [(f"conc-{i}", secrets.token_bytes(32)) for i in range(n_nodes)]
    store = open_store(db_url)
    for node, key in nodes:
        store.add_node(node, key, int(time.time() * 1000))
    store.close()
    log_path = workdir / "central-concurrent.log"
    central = CentralProcess(db_url, log_path, ("--workers", str(workers)))
    central.start()
    base = f"http://127.0.0.1:{central.wait_ready(60)}"
    lanes: list[list[tuple[int, int, Batch]]] = [[] for _ in range(LANES * n_nodes)]
    for k in range(n_requests):
        lane = k % len(lanes)
        i = lane // LANES
        start = 1 + rng.randrange(20) * (WINDOW // 2)
        lanes[lane].append((i, start, _batch(nodes[i][0], i, start, rng)))

    def send(job: tuple[int, int, Batch]) -> tuple[int, int, Batch, int, str]:
        i, start, batch = job
        status, text = _post(base, nodes[i][0], nodes[i][1], batch)
        return i, start, batch, status, text

    def run_lane(lane: list[tuple[int, int, Batch]]) -> list[tuple[int, int, Batch, int, str]]:
        return [send(job) for job in lane]

    acknowledged: set[tuple[int, int]] = set()
    sent: set[tuple[int, int]] = set()
    retry: list[tuple[int, int, Batch]] = []
    try:
        with ThreadPoolExecutor(len(lanes)) as pool:
            results = [r for lane_results in pool.map(run_lane, lanes) for r in lane_results]
        for i, start, batch, status, text in results:
            seqs = {(i, r.seq) for r in batch.readings}
            sent |= seqs
            code = ""
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if status == 200:
                acknowledged |= seqs
            else:
                retry.append((i, start, batch))
                if isinstance(doc, dict):
                    code = str(doc.get("error", ""))
            key = f"{status} {code}".strip()
            fig.answers[key] = fig.answers.get(key, 0) + 1
            if status >= 500 or status == 0:
                fig.server_errors += 1
                if DB_WORDS.search(text):
                    fig.db_text_in_body += 1
                if not (isinstance(doc, dict) and isinstance(doc.get("error"), str)
                        and isinstance(doc.get("message"), str)):
                    fig.not_our_shape += 1
                if len(fig.examples) < 3:
                    fig.examples.append(f"{status}: {text[:200]}")
        fig.acknowledged = len(acknowledged)
        fig.sent = len(sent)
        _check_stored(fig, db_url, nodes, acknowledged, count_lost=True)
        while retry and fig.retry_rounds < 10:  # as a node would: again, a few at a time
            fig.retry_rounds += 1
            time.sleep(0.2)
            again = [send(job) for job in retry]
            retry = [(i, s, b) for i, s, b, status, _ in again if status != 200]
    finally:
        central.stop()
    log_text = log_path.read_text(errors="replace")
    # one line per 5xx, or a line saying how many more like it were left out (a flood summed)
    lines = re.findall(r"(?m)^.*\b5\d\d\b.*$", log_text)
    fig.logged_5xx_lines = len(lines) + sum(int(n) for line in lines
                                            for n in re.findall(r"\((\d+) more in the last", line))
    _check_stored(fig, db_url, nodes, sent, count_lost=False)
    fig.seconds = time.monotonic() - t0
    return fig


def _check_stored(fig: ConcurrentFigures, db_url: str, nodes: list[tuple[str, bytes]],
                  want: set[tuple[int, int]], *, count_lost: bool) -> None:
    """``count_lost``: acknowledged readings missing/changed count as lost; else (after the retries)
    every reading sent must be stored, once, with its content."""
    from central.store import open_store

    store = open_store(db_url)
    try:
        held: dict[tuple[int, int], Any] = {}
        total = 0
        for i, (node, _key) in enumerate(nodes):
            rows = store.readings(node, limit=None)
            total += len(rows)
            for r in rows:
                held[(i, r.seq)] = r
    finally:
        store.close()
    missing = [k for k in want if k not in held]
    changed = [k for k in want if k in held and (held[k].channel, round(float(held[k].value), 6))
               != (_reading(*k).channel, round(float(_reading(*k).value or 0), 6))]
    if count_lost:
        fig.lost = len(missing)
        fig.changed = len(changed)
    else:
        fig.stored = len(held)
        fig.lost += len(missing)
        fig.changed = max(fig.changed, len(changed))
        fig.duplicates = total - len(held)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="concurrent overlapping batches against a real central")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    workdir = Path(tempfile.mkdtemp(prefix="streetnode-concurrent-"))
    schema = None
    if args.db == "sqlite":
        url = f"sqlite:///{workdir / 'central.db'}"
    else:
        pg = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
        schema = f"sn_conc_{secrets.token_hex(6)}"
        url = f"{pg}?schema={schema}"
    fig = run_concurrent(workdir, url, db_label=args.db, n_requests=args.requests, n_nodes=args.nodes,
                         workers=args.workers, seed=seed)
    print(f"seed {seed}, work dir {workdir}")
    print(fig.line())
    for e in fig.examples:
        print("  e.g.", e)
    if schema is not None:
        import psycopg

        with psycopg.connect(pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return 1 if (fig.lost or fig.changed or fig.duplicates or fig.db_text_in_body or fig.not_our_shape) else 0


if __name__ == "__main__":
    sys.exit(main())
