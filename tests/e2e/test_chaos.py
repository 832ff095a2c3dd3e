"""#9: the whole path broken at random, nothing lost, nothing doubled (see tests/e2e/chaos.py).

``make test`` runs 50 agent SIGKILLs against a SQLite central and against PostgreSQL (skipped
with the reason when the local server is unreachable). ``STREETNODE_CHAOS_KILLS=N`` (or
``STREETNODE_SLOW=1``: 500) for the long mode; ``STREETNODE_CHAOS_SEED=S`` replays a run.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.central.conftest import pg_url  # noqa: F401 - fixture
from tests.e2e.chaos import ChaosRun

SLOW = os.environ.get("STREETNODE_SLOW") == "1"
KILLS = int(os.environ.get("STREETNODE_CHAOS_KILLS") or (500 if SLOW else 50))


def _seed() -> int:
    s = os.environ.get("STREETNODE_CHAOS_SEED")
    return int(s) if s else random.randrange(1 << 31)


def _run(tmp_path, url, label, capsys):
    seed = _seed()
    with capsys.disabled():
        print(f"\nchaos ({label}): {KILLS} kills, seed {seed} (replay: STREETNODE_CHAOS_SEED={seed})",
              flush=True)
    fig = ChaosRun(tmp_path / "chaos", url, kills=KILLS, seed=seed, db_label=label).run()
    with capsys.disabled():
        print(fig.table())
        print(f"  (figures in {tmp_path / 'chaos' / 'figures.txt'})", flush=True)
    return fig


def _check(fig):
    assert fig.lost == 0 and fig.duplicates == 0 and fig.overlap == 0 and fig.gap_overlap == 0
    assert fig.kills >= KILLS
    assert fig.stored > 0 and fig.acknowledged > fig.prefilled
    assert fig.stored + fig.gap_readings == fig.acknowledged
    assert fig.evicted_by_agent > 0, "the agent itself evicted at the cap while the central was away"
    assert fig.reuse_samples_checked > 0
    assert sum(fig.proxy_faults.values()) > 0
    assert fig.clock_errors == 0


def test_chaos_sqlite(tmp_path, capsys):
    _check(_run(tmp_path, f"sqlite:///{tmp_path / 'central.db'}", "sqlite", capsys))


@pytest.mark.postgres
def test_chaos_postgresql(tmp_path, capsys, pg_url):  # noqa: F811
    _check(_run(tmp_path, pg_url, "postgresql", capsys))
