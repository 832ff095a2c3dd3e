"""Crash test with real processes: SIGKILL a sampling child at random points, many times.

``make test`` kills 50 times; ``STREETNODE_KILLS=N`` (or ``STREETNODE_SLOW=1``: 500) for more.
The seed is printed on failure; ``STREETNODE_CRASH_SEED`` replays a run.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time

from node.buffer import SqliteBuffer
from tests.buffer.conftest import cycle
from tests.buffer.crash_child import CAP
from tests.conftest import ROOT

KILLS = int(os.environ.get("STREETNODE_KILLS") or (500 if os.environ.get("STREETNODE_SLOW") == "1" else 50))


def run_child(path, seed, rng):
    """Start the child, SIGKILL it at a random point (sometimes while it opens the file)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tests.buffer.crash_child", str(path), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    head = b""
    if rng.random() < 0.15:
        time.sleep(rng.uniform(0.0, 0.2))
    else:  # wait (with a deadline) until it runs, then let it sample for a while
        deadline = time.monotonic() + 30
        while b"\n" not in head and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                head += os.read(proc.stdout.fileno(), 4096)
        time.sleep(rng.uniform(0.01, 0.3))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    lines = (head + out).decode().split("\n")[:-1]  # a line cut by the kill has no newline
    return [line.split() for line in lines]


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path):
    seed = int(os.environ.get("STREETNODE_CRASH_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    path = tmp_path / "buffer.db"
    expected: dict[int, float] = {}  # seq -> value of every acknowledged, not yet acked-away reading
    maybe_gone: set[int] = set()  # ack started but not confirmed: may or may not be there
    highest_seen = 0
    epoch = None
    starts = 0
    acking: set[int] = set()
    delivered_gaps = 0
    for kill in range(KILLS):
        events = run_child(path, rng.randrange(1 << 30), rng)
        for ev in events:
            if ev[0] == "START":
                starts += 1
                epoch = epoch or int(ev[1])
                assert int(ev[1]) == epoch, f"seed {seed}: epoch changed without corruption"
            elif ev[0] == "PUT":
                first, last, i = int(ev[1]), int(ev[2]), int(ev[3])
                assert first > highest_seen, f"seed {seed} kill {kill}: seq {first} reused"
                highest_seen = last
                for k, s in enumerate(cycle(i, 15)):
                    expected[first + k] = s.value
            elif ev[0] == "ACKING":
                nums = [int(x) for x in ev[1:]]
                acking = {s for lo, hi in zip(nums[::2], nums[1::2], strict=True) for s in range(lo, hi + 1)}
                maybe_gone |= acking
            elif ev[0] == "ACKED":  # the readings and the gaps of the batch were delivered
                delivered_gaps += len(ev) > 3 or len(acking) > int(ev[2]) - int(ev[1]) + 1
                for s in acking:
                    expected.pop(s, None)
                    maybe_gone.discard(s)
        if not path.exists():
            continue
        # a restart: every acknowledged reading is there, claimed-but-unacked ones included
        buf = SqliteBuffer(path, "node-crash", max_size=CAP)
        batch = buf.claim(1_000_000)
        present = {r.seq: r.value for r in batch.readings} if batch else {}
        epoch = epoch or buf.epoch
        assert buf.epoch == epoch, f"seed {seed}: epoch changed without corruption"
        buf.release(batch.id) if batch else None
        buf.close()
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"seed {seed}"
        gaps = db.execute("SELECT first_seq, last_seq, count FROM gaps ORDER BY first_seq").fetchall()
        db.close()
        for (_, last, _), (first, _, _) in zip(gaps, gaps[1:], strict=False):
            assert last < first, f"seed {seed}: overlapping gaps {gaps}"
        evicted = {s for first, last, _ in gaps for s in range(first, last + 1)}
        assert not evicted & set(present), f"seed {seed}: a reading is both present and in a gap"
        for s in evicted & set(expected):  # evicted by the size cap: accounted for, exactly
            expected.pop(s)
        missing = [s for s in expected if s not in present and s not in maybe_gone]
        assert not missing, f"seed {seed} kill {kill}: acknowledged readings lost: {missing[:10]}"
        wrong = [s for s, v in expected.items() if s in present and present[s] != v]
        assert not wrong, f"seed {seed} kill {kill}: readings changed: {wrong[:10]}"
        for s in maybe_gone & set(expected):
            if s not in present:
                expected.pop(s)
        maybe_gone.clear()
        highest_seen = max([highest_seen, *present])
    assert starts >= KILLS // 2, f"seed {seed}: the child rarely got going ({starts} starts)"
    assert len(expected) > 0 and highest_seen > 1000
    if highest_seen > 4 * CAP // 16:  # far more readings than fit (~16 B each): eviction must have run
        assert evicted or delivered_gaps, "the run crossed the size cap without a gap"
