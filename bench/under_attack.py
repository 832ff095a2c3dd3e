"""Valid upload latency while the receiver is under attack, against idle, in the same run.

    python -m bench.under_attack [--quick] [--db sqlite|postgresql]

`streetnode-central serve` (its own process, default limits) on SQLite; a valid node uploads a
steady-state batch (33 readings) every 0.1 s over one kept-alive session, first with nothing else
going on (the baseline), then while each attack of bench/attacks.py runs (garbage on raw sockets,
slowloris, stalled bodies, a connection flood past the cap, a stolen key: during the burst its
quota allows, as any node draining a week's backlog, and once the quota refuses it). The figure
is the median latency of the valid uploads; every one must succeed. The last row is the
receiver's peak RSS (VmHWM) over the whole run against the 200 MiB ceiling of docs/protocol.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from bench.attacks import (
    THIEF_NODE,
    VALID_NODE,
    Attack,
    Outcome,
    Server,
    ValidNode,
    attacks,
    raise_file_limit,
    run_attack,
)
from central.limits import IngestLimits

RSS_CEILING_MIB = 200
PG_URL = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def measure(db: str, workdir: Path, *, seconds: float) -> list[dict]:
    from central.store import open_store

    limits = IngestLimits()
    raise_file_limit(limits.max_connections + 600)
    keys = {VALID_NODE: secrets.token_bytes(32), THIEF_NODE: secrets.token_bytes(32)}
    store = open_store(db)
    for node, key in keys.items():
        store.add_node(node, key, 0)
    store.close()
    server = Server(db, "", workdir)
    rows: list[dict] = []
    try:
        valid = ValidNode(server.url, keys[VALID_NODE])
        idle = run_attack(server, None, valid, seconds=seconds)
        if idle.failures:
            raise RuntimeError(f"valid uploads failed with nothing going on: {idle.failures[:3]}")
        kind = db.split(":", 1)[0]
        for name, make in attacks(server, valid_key=keys[VALID_NODE], thief_key=keys[THIEF_NODE],
                                  max_body=limits.max_body).items():
            if name == "quota-abuse":
                rows += _quota_rows(server, make(), valid, idle, kind, seconds)
                continue
            during = run_attack(server, make(), valid, seconds=seconds)
            rows.append(_row(f"valid upload latency under {name} vs idle ({kind})", during, idle))
        rows.append({"metric": f"receiver peak RSS through every attack ({kind})",
                     "value": round(server.peak_rss_mib(), 1), "unit": "MiB", "baseline": "",
                     "baseline_value": None, "ratio": None, "goal": f"≤ {RSS_CEILING_MIB} MiB"})
        valid.close()
    finally:
        server.stop()
    return rows


def _row(metric: str, during: Outcome, idle: Outcome) -> dict:
    failed = len(during.failures)
    verdict = f"; {failed} FAILED" if failed else f", all {len(during.results)} ok"
    return {"metric": metric, "value": round(during.median() * 1000, 1), "unit": "ms median",
            "baseline": "idle, same server", "baseline_value": round(idle.median() * 1000, 1),
            "ratio": round(during.median() / idle.median(), 2), "goal": "≤ 2×" + verdict}


def _quota_rows(server: Server, attack: Attack, valid: ValidNode, idle: Outcome, kind: str,
                seconds: float) -> list[dict]:
    """The stolen key's burst (what the quota lets any node do: drain a week at full speed), then
    the same attack once the quota refuses it."""
    attack.start()
    try:
        burst = run_attack(server, None, valid, seconds=seconds)
        deadline = time.monotonic() + 180
        while attack.stats.get("refused_quota", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        stored = attack.stats.get("stored", 0)
        refused = run_attack(server, None, valid, seconds=seconds)
    finally:
        attack.stop()
    return [_row(f"valid upload latency during a stolen key's quota burst vs idle ({kind})", burst, idle),
            _row(f"valid upload latency once the stolen key gets 429 ({stored:,} stored) vs idle ({kind})",
                 refused, idle)]


def run(quick: bool = False, db: str = "sqlite") -> list[dict]:
    seconds = 3.0 if quick else 8.0
    with tempfile.TemporaryDirectory(prefix="streetnode-attack-") as tmp:
        if db == "sqlite":
            url = f"sqlite:///{tmp}/central.db"
        else:
            schema = f"sn_bench_{secrets.token_hex(4)}"
            url = f"{PG_URL}?schema={schema}"
        try:
            return measure(url, Path(tmp), seconds=seconds)
        finally:
            if db != "sqlite":
                import psycopg

                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.under_attack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s per attack instead of 8")
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args(argv)
    from bench.__main__ import format_table

    print(format_table([{"bench": "under_attack", **row} for row in run(args.quick, args.db)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
