"""A small storm recovery in make test: many nodes with a backlog reconnect at once through
``serve --workers 2`` on PostgreSQL (the full-size run is ``python -m bench.storm``)."""

from __future__ import annotations

import secrets

import pytest

from bench import storm

pytestmark = pytest.mark.postgres


def test_twenty_nodes_drain_at_once_through_two_workers_nothing_lost_no_5xx(pg_url):
    nodes, per_node = 20, 3_000  # 60,000 readings, one request per node, all at once
    first_ms = storm.backlog_start_ms(per_node)
    bodies = {storm.node_id(i): storm.node_bodies((i, per_node, first_ms)) for i in range(nodes)}
    keys = {n: secrets.token_bytes(32) for n in bodies}
    result = storm.drain(pg_url, bodies, keys, per_node, workers=2, clients=2, read=True, first_ms=first_ms,
                         read_every_s=0.1)
    assert result.stored_ok, result.mismatches
    statuses = result.stats.statuses
    assert not [code for code in statuses if code >= 500 and code != 503], statuses
    assert result.stats.timeouts == 0
    assert statuses.get(200) == nodes  # one 3,000-reading batch per node, each stored once
    assert result.read_errors == []
    assert result.reads_idle["latest"] and result.reads_idle["series"]
