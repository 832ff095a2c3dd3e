"""Readings partitioned by week on PostgreSQL (central/partitions.py) and retention on both stores
(central/retention.py): where rows land, at most once per (node, epoch, seq) across partitions,
weeks created late, and a week dropped while ingest goes on."""

from __future__ import annotations

import itertools
import threading

import psycopg
import pytest

from central import partitions, retention
from central.retention import DAY_MS, RetentionPolicy, parse_retention
from central.store import open_store
from node.errors import ConfigError
from node.model import Reading
from node.protocol import IngestBatch
from tests.central.helpers import KEY, NODE, now_ms

WEEK = partitions.PERIOD_MS


def batch(seqs, walls, *, channel: str = "flood.depth_cm", epoch: int = 1) -> IngestBatch:
    readings = [Reading(s, channel, float(s), 0, wall, 5_000 + s, "boot-a")
                for s, wall in zip(seqs, walls, strict=True)]
    return IngestBatch(NODE, epoch, now_ms(), readings, [], [], {}, {channel: "x"})


_SIGNATURES = itertools.count()


def ingest(store, b: IngestBatch, received_ms: int | None = None):
    at = now_ms() if received_ms is None else received_ms
    return store.ingest(b, signature=f"sig-{next(_SIGNATURES)}", expires_ms=at + 60_000, now_ms=at)


def where(store, seq: int) -> str:
    rows = store.transaction(lambda tx: tx.execute(
        "SELECT tableoid::regclass::text FROM readings WHERE node_id = ? AND seq = ?",
        (NODE, seq)).fetchall())
    assert len(rows) == 1, rows
    return rows[0][0].split(".")[-1]


@pytest.fixture
def pg(pg_url):
    store = open_store(pg_url)
    store.add_node(NODE, KEY, now_ms())
    yield store
    store.close()


@pytest.mark.postgres
def test_readings_land_in_their_week_and_odd_clocks_in_the_default(pg):
    now = now_ms()
    this_week = partitions.week_start(now)
    starts = pg.transaction(partitions.weeks)
    weeks = range(-partitions.BEHIND_WEEKS, partitions.AHEAD_WEEKS + 1)
    assert starts == [this_week + k * WEEK for k in weeks]
    ingest(pg, batch([1, 2, 3], [now, 5_000, now + 2 * WEEK]))
    assert where(pg, 1) == partitions.week_name(this_week)
    assert where(pg, 2) == partitions.DEFAULT  # a node at 1970
    assert where(pg, 3) == partitions.week_name(this_week + 2 * WEEK)
    assert [r.seq for r in pg.readings(NODE)] == [2, 1, 3]  # reads see one table


@pytest.mark.postgres
def test_a_reading_resent_with_another_wall_time_is_stored_once(pg):
    now = now_ms()
    first = ingest(pg, batch([1, 2], [now, now]))
    assert (first.stored, first.duplicates) == (2, 0)
    # the same (node, epoch, seq) stamped a week later: another partition, and not the same sample
    # (a conflict, docs/protocol.md): neither stored again nor stored over the original
    again = ingest(pg, batch([1, 2, 3], [now + WEEK, now + WEEK, now + WEEK]))
    assert (again.stored, again.duplicates, again.conflicts) == (1, 0, 2)
    assert pg.seqs(NODE, 1) == [1, 2, 3] and pg.count_readings(NODE) == 3


@pytest.mark.postgres
def test_a_week_created_late_takes_its_readings_out_of_the_default(pg):
    old_week = partitions.week_start(now_ms()) - 10 * WEEK  # the central was not running then
    ingest(pg, batch([1, 2], [old_week + 1000, old_week + WEEK - 1]))
    assert where(pg, 1) == partitions.DEFAULT
    assert pg.transaction(lambda tx: partitions.create_week(tx, old_week), write=True)
    assert not pg.transaction(lambda tx: partitions.create_week(tx, old_week), write=True)  # once
    assert where(pg, 1) == where(pg, 2) == partitions.week_name(old_week)
    assert pg.count_readings(NODE) == 2


@pytest.mark.postgres
def test_maintenance_creates_the_weeks_ahead_as_time_passes(pg):
    later = now_ms() + 3 * WEEK
    created = retention.maintain(pg, RetentionPolicy(), later)["created"]
    assert created == [partitions.week_name(partitions.week_start(now_ms()) + k * WEEK)
                       for k in range(partitions.AHEAD_WEEKS + 1, partitions.AHEAD_WEEKS + 4)]
    assert retention.maintain(pg, RetentionPolicy(), later)["created"] == []


@pytest.mark.postgres
def test_a_week_is_dropped_while_ingest_goes_on_and_a_long_read_only_defers_it(pg, pg_url):
    now = now_ms()
    old_week = partitions.week_start(now) - 60 * WEEK
    pg.transaction(lambda tx: partitions.create_week(tx, old_week), write=True)
    ingest(pg, batch(range(100), [old_week + 1000] * 100))
    ingest(pg, batch(range(100, 110), [now] * 10))
    name = partitions.week_name(old_week)
    policy = RetentionPolicy(raw_days=365, classes={})

    # a read transaction that holds readings (a report running for minutes): the detach waits at
    # most DETACH_LOCK_TIMEOUT_MS for it, gives up, and ingest is not queued behind it
    reader = psycopg.connect(pg.url)
    reader.execute(f'SET search_path TO "{pg.schema}"')
    reader.execute("SELECT count(*) FROM readings").fetchall()  # holds ACCESS SHARE until it ends
    try:
        report = retention.apply(pg, policy, now)
        assert report["skipped"] == [name] and report["dropped"] == []
        writer = open_store(pg_url)  # another process's connection
        try:
            assert ingest(writer, batch([200], [now])).stored == 1
        finally:
            writer.close()
    finally:
        reader.close()

    # ingest from another connection all along while the week is detached and dropped
    errors: list[BaseException] = []
    stop = threading.Event()
    stored_seqs: list[int] = []

    def keep_ingesting() -> None:
        writer = open_store(pg_url)
        seq = 1000
        try:
            while not stop.is_set():
                try:
                    ingest(writer, batch([seq], [now_ms()]))
                    stored_seqs.append(seq)
                except BaseException as e:
                    errors.append(e)
                    return
                seq += 1
        finally:
            writer.close()

    thread = threading.Thread(target=keep_ingesting)
    thread.start()
    try:
        while len(stored_seqs) < 5:
            stop.wait(0.01)
        report = retention.apply(pg, policy, now)
        before = len(stored_seqs)
        while len(stored_seqs) < before + 5 and thread.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert errors == []
    assert report["dropped"] == [name], report
    assert pg.transaction(lambda tx: tx.execute("SELECT to_regclass(?)", (name,)).fetchall())[0][0] is None
    assert pg.count_readings(NODE) == 10 + 1 + len(stored_seqs)


def test_retention_per_channel_class_and_rollups_kept_longer(store):
    store.add_node(NODE, KEY, now_ms())
    now = now_ms()
    old = now - 100 * DAY_MS
    ingest(store, batch([1], [old], channel="node.cpu_temp_c"), received_ms=old)
    ingest(store, batch([2], [now], channel="node.cpu_temp_c"))
    ingest(store, batch([3], [old], channel="flood.depth_cm"), received_ms=old)
    ingest(store, batch([4], [now], channel="flood.depth_cm"))
    ingest(store, batch([5], [now - 500 * DAY_MS], channel="flood.depth_cm"), received_ms=now - 500 * DAY_MS)
    # stamped 500 days ago by a wrong clock, but it arrived just now: kept
    ingest(store, batch([6], [now - 500 * DAY_MS], channel="flood.depth_cm"))
    policy = parse_retention({"raw_days": 400, "hourly_days": 3650, "classes": {"node.*": 30}})
    report = retention.maintain(store, policy, now)
    assert report["deleted"] == 2  # node.* older than 30 days, flood.* older than 400 days
    assert store.seqs(NODE, 1) == [2, 3, 4, 6]
    hours = store.transaction(lambda tx: tx.execute(
        "SELECT channel, hour_ms FROM readings_hourly ORDER BY hour_ms").fetchall())
    assert len(hours) == 5  # the rollup of what was deleted stays (3650 days)
    assert retention.apply(store, policy, now + 3700 * DAY_MS)["hourly_deleted"] == 5


@pytest.mark.parametrize(("table", "message"), [
    ({"raw_days": 0}, "[retention] raw_days: expected whole days from 1 to 100000, got 0"),
    ({"raw_dayz": 3}, "[retention] raw_dayz: unknown key"),
    ({"classes": {"Node*": 3}}, "[retention] classes: 'Node*': expected a channel name or a prefix"),
    ({"classes": {"node.*": "90"}}, "[retention] classes 'node.*': expected whole days"),
])
def test_bad_retention_is_one_line_naming_the_key(table, message):
    with pytest.raises(ConfigError) as e:
        parse_retention(table)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_serve_applies_its_retention_config_and_refuses_a_bad_one(store_url, cli_env, tmp_path):
    import signal
    import time

    from tests.central.test_cli import run, start_server

    store = open_store(store_url)
    try:
        store.add_node(NODE, KEY, now_ms())
        old = now_ms() - 100 * DAY_MS
        ingest(store, batch([1], [old], channel="node.cpu_temp_c"), received_ms=old)
        ingest(store, batch([2], [now_ms()], channel="node.cpu_temp_c"))
    finally:
        store.close()
    conf = tmp_path / "central.toml"
    conf.write_text('[retention]\nraw_days = 400\n[retention.classes]\n"node.*" = 30\n')
    proc, _ = start_server(["--db", store_url, "--config", str(conf)], cli_env)
    try:
        store = open_store(store_url)
        try:
            deadline = time.monotonic() + 30
            while store.seqs(NODE, 1) != [2] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert store.seqs(NODE, 1) == [2]  # the 100-day-old node.* reading went at the start
        finally:
            store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    conf.write_text("[retention]\nraw_days = -1\n")
    bad = run(["serve", "--db", store_url, "--config", str(conf), "--listen", "127.0.0.1:0"], cli_env)
    assert bad.returncode == 78, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].endswith("[retention] raw_days: expected whole days from 1 "
                                                        "to 100000, got -1"), bad.stderr
