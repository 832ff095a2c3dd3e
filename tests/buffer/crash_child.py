"""Child process of the crash test: samples into the buffer forever, reporting what is acknowledged.

Run as ``python -m tests.buffer.crash_child PATH SEED``. Every line is flushed before the next
action, so the parent knows exactly what was acknowledged when it SIGKILLs us:
``PUT first last cycle`` after put() returned durable, ``ACKING lo hi [gap_lo gap_hi]...``
before and ``ACKED lo hi`` after an ack (the gaps riding along are delivered with it).
"""

from __future__ import annotations

import random
import sys

from node.buffer import SqliteBuffer
from tests.buffer.conftest import cycle, stamp

CAP = 256 * 1024  # small, so runs cross it and eviction happens under SIGKILL too


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    out = sys.stdout
    buf = SqliteBuffer(path, "node-crash", max_size=CAP)
    buf.open()
    print(f"START {buf.epoch} {buf.stats().last_seq}", file=out, flush=True)
    claims = []
    i = rng.randrange(1_000_000)
    while True:
        i += 1
        res = buf.put(cycle(i, 15), stamp(i))
        if res.durable:
            print(f"PUT {res.first_seq} {res.last_seq} {i}", file=out, flush=True)
        r = rng.random()
        if r < 0.15:
            batch = buf.claim(rng.randrange(5, 60), newest_first=rng.random() < 0.3)
            if batch is not None:
                claims.append(batch)
        elif r < 0.25 and claims:
            batch = claims.pop(rng.randrange(len(claims)))
            lo, hi = (batch.readings[0].seq, batch.readings[-1].seq) if batch.readings else (0, -1)
            if rng.random() < 0.7:
                gaps = " ".join(f"{g.first_seq} {g.last_seq}" for g in batch.gaps)
                print(f"ACKING {lo} {hi} {gaps}", file=out, flush=True)
                buf.ack(batch.id)
                print(f"ACKED {lo} {hi}", file=out, flush=True)
            else:
                buf.release(batch.id)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
