"""Found by the long chaos run (#9, PostgreSQL, seed 2018842542), owned by node/buffer and the
protocol (docs/chaos.md, "Found", 3); fixed in central/store_sql.py (one gap per first_seq).

An eviction gap rides along with a batch; the central stores it, the ack is lost. Before the
resend the buffer evicts more and *merges* the new run into the same pending gap row, so the
resend carries a longer gap with the same first_seq: the central (gaps unique by first_seq,
last_seq, reason) keeps both, and the evicted readings of the first are counted twice.
"""

from __future__ import annotations

import time

from node.buffer import SqliteBuffer
from node.uploader import Uploader
from tests.support.faultproxy import FaultProxy
from tests.uploader.conftest import NODE, Central, fill


def _fill_until_evicted(buf, start: int) -> int:
    i = start
    while not buf.stats().dropped_total:
        fill(buf, 50, start=i)
        i += 50
    return i


def test_a_gap_resent_after_a_lost_ack_and_more_eviction_is_not_counted_twice(tmp_path):
    central = Central(tmp_path)
    buf = SqliteBuffer(tmp_path / "buffer.db", NODE, max_size=1024**2)
    buf.open()
    try:
        with FaultProxy(central.port, lifetime=60) as proxy:
            up = Uploader(buf, proxy.url, central.key, NODE, live_readings=10, backoff_initial=0.1,
                          backoff_max=1.0)
            i = _fill_until_evicted(buf, 0)
            proxy.set("cut", count=1)  # the live batch (with the gap) is stored, its ack lost
            up.run_round(time.monotonic() + 5)
            assert central.store.gaps(NODE), "the central stored the gap of the cut batch"
            first = buf.stats().dropped_total
            while buf.stats().dropped_total == first:  # more eviction while it is pending again
                fill(buf, 50, start=i)
                i += 50
            deadline = time.monotonic() + 30
            while (buf.stats().readings or buf.stats().gaps_pending) and time.monotonic() < deadline:
                if up.ready():
                    up.run_round(time.monotonic() + 5)
                else:
                    time.sleep(0.05)
            up.close()
        gaps = central.store.gaps(NODE)
        covered = [s for g in gaps for s in range(g.first_seq, g.last_seq + 1)]
        assert len(covered) == len(set(covered)), f"overlapping gaps at the central: {gaps}"
    finally:
        buf.close()
        central.close()
