"""The operator console (central/console) on PostgreSQL: 1,000 nodes, ≥ 10 M readings.

    python -m bench.console [--quick]          (also part of `python -m bench`)

Generated in the database (generate_series: 999 nodes × 8 channels × 1,250 readings a minute apart,
plus one node with 7 days at 10 s on its 8 channels), then the console's tables filled by the same
SQL as its migration. The receiver runs as `streetnode-central serve` in its own process. Measured,
each against a baseline in the same run:
- overview (`GET /v1/latest`, all nodes) vs the best hand-written SQL on readings giving the same
  answer (a LATERAL newest-row index lookup per node and channel), and vs the endpoint's own SQL;
- a 7-day chart series (`GET .../series?since=-7d`, step auto) vs the same aggregate by hand;
- page load to first chart in Chromium (the node page, 7 days; skipped without chromium);
- a 33-reading upload's latency while 20 pollers poll the overview (every ``poll_s``) vs idle;
- what keeping the console's tables costs `Store.ingest` (33-reading batches) vs without them.

--quick: 100 nodes × 8 × 120 readings and one day for the dense node (seconds, not minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
import uuid
from typing import Any

import requests

from bench.receiver import start_central, stop_central
from central.accounts import Accounts
from central.console import rollup
from central.console.config import ConsoleConfig
from central.store import open_store
from node import protocol
from node.model import Batch, Reading

PG_URL = os.environ.get("STREETNODE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
CHANNELS = ("flood.depth_cm", "air.pm2_5_ugm3", "weather.temperature_c", "weather.humidity_pct",
            "weather.pressure_hpa", "rain.rain_rate_mm_h", "node.cpu_temp_c", "node.disk_used_pct")
UNITS = ("cm", "µg/m³", "°C", "%", "hPa", "mm/h", "°C", "%")
KEY = bytes(range(1, 33))
DENSE = "pole-0000"
PASSWORD = "bench console password"


def sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"nodes": 100, "per_channel": 120, "dense_s": 86_400, "repeats": 7, "uploads": 15}
    return {"nodes": 1000, "per_channel": 1250, "dense_s": 7 * 86_400, "repeats": 15, "uploads": 40}


def pg_connect(url: str, schema: str) -> Any:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f'SET search_path TO "{schema}"')
    return conn


def generate(url: str, schema: str, size: dict[str, int], now_ms: int, *, spacing_ms: int = 60_000,
             finish: str = "ANALYZE") -> int:
    """Nodes, channels and readings by SQL (``size["per_channel"]`` readings per channel of each
    node, ``spacing_ms`` apart, and one node ``size["dense_s"]`` seconds at 10 s); then the
    console's tables as the migration fills them, and ``finish`` (ANALYZE, or VACUUM ANALYZE)."""
    conn = pg_connect(url, schema)
    channels = "ARRAY[" + ",".join(f"'{c}'" for c in CHANNELS) + "]"
    units = "ARRAY[" + ",".join(f"'{u}'" for u in UNITS) + "]"
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '256MB'")
    conn.execute("INSERT INTO nodes (node_id, key_hex, created_ms, last_seen_ms, health_json, health_ms) "
                 "SELECT 'pole-' || lpad(n::text, 4, '0'), %s, %s, %s, json_build_object("
                 "'backlog_readings', 3, 'oldest_reading_age_s', 10.0, 'firmware', 'streetnode 0.1.0', "
                 "'config_hash', '0123456789abcdef', 'location_lat', 20.98 + (n %% 40) * 0.002, "
                 "'location_lon', 105.78 + (n / 40) * 0.003, 'location_ward', 'Ward ' || (n %% 12), "
                 "'location_label', 'pole ' || n, 'storm', false, 'clock_synced', true, "
                 "'clock_offset_ms', 3)::text, %s FROM generate_series(0, %s - 1) n",
                 (KEY.hex(), now_ms, now_ms, now_ms, size["nodes"]))
    conn.execute(f"INSERT INTO channels (node_id, channel, unit) SELECT node_id, ({channels})[c], "
                 f"({units})[c] FROM nodes, generate_series(1, 8) c")
    for index in ("readings_by_time", "readings_by_stream", "readings_by_ingest_tx"):
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    spacing, count = spacing_ms, size["per_channel"]
    conn.execute(f"INSERT INTO readings (node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, "
                 f"boot_id, received_ms) SELECT 'pole-' || lpad(n::text, 4, '0'), 1, i * 8 + c, "
                 f"({channels})[c + 1], round((20 + 10 * sin(i / 50.0 + n) + c)::numeric, 2), 0, "
                 f"%s - (%s - i)::bigint * %s, 1000, 'boot-a', %s - (%s - i)::bigint * %s + 2000 "
                 f"FROM generate_series(1, %s - 1) n, generate_series(0, %s - 1) i, generate_series(0, 7) c",
                 (now_ms, count, spacing, now_ms, count, spacing, size["nodes"], count))
    dense = size["dense_s"] // 10
    conn.execute(f"INSERT INTO readings (node_id, epoch, seq, channel, value, flags, wall_ms, boot_ms, "
                 f"boot_id, received_ms) SELECT %s, 1, i * 8 + c, ({channels})[c + 1], "
                 f"round((15 + 15 * sin(i / 360.0) + c)::numeric, 2), 0, %s - (%s - i) * 10000, 1000, "
                 f"'boot-a', %s - (%s - i) * 10000 + 2000 FROM generate_series(0, %s - 1) i, "
                 f"generate_series(0, 7) c", (DENSE, now_ms, dense, now_ms, dense, dense))
    conn.execute("CREATE INDEX readings_by_time ON readings (node_id, wall_ms)")
    conn.execute("CREATE INDEX readings_by_stream ON readings (node_id, channel, wall_ms, epoch, seq)")
    conn.execute("CREATE INDEX readings_by_ingest_tx ON readings (ingest_tx)")
    for statement in rollup.BACKFILL:
        conn.execute(statement)
    conn.execute(finish)
    total = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    conn.close()
    return int(total)


def timed(fn: Any, repeats: int, pause_s: float = 0.0) -> float:
    """Median wall time of ``fn()`` in ms, after one warm-up call, ``pause_s`` between calls."""
    fn()
    times = []
    for _ in range(repeats):
        time.sleep(pause_s)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


class Uploader:
    """A node's steady-state uploads: 33 readings, signed, on one keep-alive connection."""

    def __init__(self, base: str, node: str) -> None:
        self.base, self.node, self.seq = base, node, 0
        self.session = requests.Session()

    def upload_ms(self) -> float:
        now = int(time.time() * 1000)
        readings = [Reading(self.seq + i, CHANNELS[i % 8], 20.0 + i, 0, now - (33 - i) * 900, 1000 + i,
                            "boot-b") for i in range(33)]
        self.seq += 33
        body = protocol.encode_batch(Batch(self.seq, self.node, 2, readings),
                                     health={"backlog_readings": 33}, sent_ms=now)
        headers = dict(protocol.BODY_HEADERS)
        headers.update(protocol.sign_request(KEY, "POST", protocol.INGEST_PATH, body, now, node_id=self.node))
        t0 = time.perf_counter()
        answer = self.session.post(self.base + protocol.INGEST_PATH, data=body, headers=headers, timeout=30)
        elapsed = (time.perf_counter() - t0) * 1000
        if answer.status_code != 200:
            raise RuntimeError(f"upload: HTTP {answer.status_code} {answer.text[:200]}")
        return elapsed


def upload_latency(uploader: Uploader, n: int) -> float:
    times = []
    for _ in range(n):
        times.append(uploader.upload_ms())
        time.sleep(0.25)
    return statistics.median(times)


def pollers(base: str, token: str, count: int, every_s: float,
            stop: threading.Event) -> list[threading.Thread]:
    def poll(offset: float) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        if stop.wait(offset):
            return
        while not stop.is_set():
            session.get(base + "/v1/latest", timeout=30).raise_for_status()
            stop.wait(every_s)

    threads = [threading.Thread(target=poll, args=(every_s * i / count,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def page_load_ms(base: str, repeats: int) -> float | str:
    """Median ms from navigation to the first drawn chart of the dense node's 7-day page."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        return "skipped: chromium/chromedriver not installed"
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(base + "/console/login")
        driver.find_element(By.ID, "user").send_keys("bench")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-button").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.rstrip("/").endswith("/console"))
        times = []
        for _ in range(repeats):
            driver.get(f"{base}/console/nodes/{DENSE}?range=7d")
            WebDriverWait(driver, 60, poll_frequency=0.05).until(
                lambda d: d.execute_script("return window.consoleFirstChartMs !== undefined"))
            times.append(float(driver.execute_script("return window.consoleFirstChartMs")))
        return statistics.median(times)
    finally:
        driver.quit()


def ingest_cost(url: str, batches: int) -> tuple[float, float]:
    """Store.ingest of 33-reading batches per second, with and without the console's tables."""
    store = open_store(url)
    store.add_node("cost-1", KEY, 0)
    original = rollup.update

    def rate(epoch: int) -> float:
        now = int(time.time() * 1000)
        t0 = time.perf_counter()
        for b in range(batches):
            readings = [Reading(b * 33 + i, CHANNELS[i % 8], 20.0 + i, 0, now + b * 30_000 + i * 900, 0,
                                "b") for i in range(33)]
            body = protocol.encode_batch(Batch(b, "cost-1", epoch, readings), health={}, sent_ms=now)
            batch = protocol.decode_body(body, max_decompressed=1 << 20)
            store.ingest(batch, signature=uuid.uuid4().hex * 2, expires_ms=2**50, now_ms=now)
        return batches / (time.perf_counter() - t0)

    def skip(*args: Any, **kwargs: Any) -> None:
        return None

    with_tables, without = [], []
    try:
        rate(1)  # warm-up
        for round_ in range(3):  # alternate, so the machine's other load hits both alike
            rollup.update = original
            with_tables.append(rate(10 + 2 * round_))
            rollup.update = skip
            without.append(rate(11 + 2 * round_))
    finally:
        rollup.update = original
        store.close()
    return statistics.median(with_tables), statistics.median(without)


def run(quick: bool = False) -> list[dict]:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as e:  # no server: one row that says so
        return [{"metric": "console (PostgreSQL)", "value": None, "unit": "",
                 "goal": f"skipped: PostgreSQL at {PG_URL} unreachable ({type(e).__name__})"}]
    size = sizes(quick)
    schema = f"bench_console_{uuid.uuid4().hex[:8]}"
    url = f"{PG_URL}?schema={schema}"
    rows: list[dict] = []
    store = open_store(url)
    proc = None
    try:
        now = int(time.time() * 1000)
        t0 = time.monotonic()
        total = generate(PG_URL, schema, size, now)
        print(f"bench/console: {total:,} readings of {size['nodes']} nodes generated in "
              f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        accounts = Accounts(store)
        token = accounts.add_token("bench", "read")
        accounts.add_user("bench", "read", PASSWORD)
        proc, base = start_central(["serve", "--listen", "127.0.0.1:0", "--db", url], timeout=60,
                                   drop_env=["STREETNODE_DEBUG"])
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        conn = pg_connect(PG_URL, schema)
        repeats = size["repeats"]
        tag = f"{size['nodes']} nodes, {total / 1e6:.1f} M readings"

        def overview() -> None:
            answer = api.get(base + "/v1/latest", timeout=60)  # gzip, as a browser asks
            answer.raise_for_status()
            answer.json()

        def lateral() -> None:
            conn.execute("SELECT c.node_id, c.channel, c.unit, n.last_seen_ms, n.health_json, r.value, "
                         "r.flags, r.wall_ms FROM channels c JOIN nodes n ON n.node_id = c.node_id "
                         "CROSS JOIN LATERAL (SELECT value, flags, wall_ms FROM readings r "
                         "WHERE r.node_id = c.node_id AND r.channel = c.channel ORDER BY wall_ms DESC "
                         "LIMIT 1) r ORDER BY 1, 2").fetchall()

        def own_sql() -> None:
            conn.execute("SELECT n.node_id, n.last_seen_ms, n.health_json, l.channel, l.value, l.flags, "
                         "l.wall_ms, c.unit FROM nodes n LEFT JOIN latest_readings l "
                         "ON l.node_id = n.node_id LEFT JOIN channels c ON c.node_id = l.node_id "
                         "AND c.channel = l.channel ORDER BY n.node_id, l.channel").fetchall()

        # the overview's shared answer lives overview_cache_s (1 s): pausing longer makes every timed
        # request build it (the figure that matters); the cached answer is timed apart
        overview_ms = timed(overview, repeats, pause_s=ConsoleConfig().overview_cache_s + 0.1)
        cached_ms = timed(overview, repeats)
        lateral_ms = timed(lateral, repeats)
        own_ms = timed(own_sql, repeats)
        rows.append({"metric": f"overview GET /v1/latest ({tag})", "value": overview_ms, "unit": "ms",
                     "baseline": "hand-written SQL on readings (LATERAL newest row per node+channel)",
                     "baseline_value": lateral_ms, "ratio": overview_ms / lateral_ms,
                     "goal": "≤ 300 ms, ≤ 3×"})
        rows.append({"metric": "overview GET /v1/latest, the shared answer (another poller built it)",
                     "value": cached_ms, "unit": "ms", "baseline": "building it",
                     "baseline_value": overview_ms, "ratio": cached_ms / overview_ms, "goal": "report"})
        rows.append({"metric": "overview GET /v1/latest vs its own SQL (latest_readings join)",
                     "value": overview_ms, "unit": "ms", "baseline": "the same SQL, psycopg, no HTTP/JSON",
                     "baseline_value": own_ms, "ratio": overview_ms / own_ms, "goal": "report"})

        span_ms = size["dense_s"] * 1000
        channel = "flood.depth_cm"

        series_url = f"{base}/v1/nodes/{DENSE}/series"
        series_query = {"channel": channel, "since": f"-{span_ms}ms"}

        def series() -> None:
            api.get(series_url, params=series_query, timeout=60).raise_for_status()

        step = api.get(series_url, params=series_query, timeout=60).json()["step_ms"]

        def series_sql() -> None:
            since = int(time.time() * 1000) - span_ms
            conn.execute("SELECT (wall_ms / %s) * %s, MIN(value), MAX(value), AVG(value), COUNT(value) "
                         "FROM readings WHERE node_id = %s AND channel = %s AND wall_ms >= %s "
                         "GROUP BY 1 ORDER BY 1", (step, step, DENSE, channel, since)).fetchall()

        series_ms, series_sql_ms = timed(series, repeats), timed(series_sql, repeats)
        days = size["dense_s"] // 86_400
        what = f"{days}-day series, {size['dense_s'] // 10:,} readings → buckets of {step // 1000} s"
        rows.append({"metric": what,
                     "value": series_ms, "unit": "ms", "baseline": "the same aggregate by hand (psycopg)",
                     "baseline_value": series_sql_ms, "ratio": series_ms / series_sql_ms,
                     "goal": "≤ 300 ms, ≤ 3×"})

        page = page_load_ms(base, max(3, repeats // 3))
        if isinstance(page, str):
            rows.append({"metric": "page load to first chart (Chromium)", "value": None, "unit": "",
                         "goal": page})
        else:
            rows.append({"metric": f"page load to first chart (Chromium, node page, {days} d, 8 charts)",
                         "value": page, "unit": "ms", "goal": "≤ 2000 ms"})

        uploader = Uploader(base, "pole-0001")
        idle_ms = upload_latency(uploader, size["uploads"])
        stop = threading.Event()
        threads = pollers(base, token, 20, ConsoleConfig().poll_s, stop)
        try:
            time.sleep(1.0)
            busy_ms = upload_latency(uploader, size["uploads"])
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        rows.append({"metric": f"33-reading upload latency (median), 20 pollers on /v1/latest every "
                               f"{ConsoleConfig().poll_s:g} s",
                     "value": busy_ms, "unit": "ms", "baseline": "idle (no pollers)",
                     "baseline_value": idle_ms, "ratio": busy_ms / idle_ms, "goal": "≤ 2×"})
        conn.close()
    finally:
        if proc is not None:
            stop_central(proc, timeout=20)
        store.close()
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as drop:
            drop.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    cost_schema = f"bench_console_cost_{uuid.uuid4().hex[:8]}"
    try:
        with_tables, without = ingest_cost(f"{PG_URL}?schema={cost_schema}", 60 if quick else 200)
        rows.append({"metric": "Store.ingest of 33-reading batches with the console's tables (median of 3)",
                     "value": with_tables, "unit": "batches/s", "baseline": "the same without them",
                     "baseline_value": without, "ratio": with_tables / without,
                     "goal": "report (the price)"})
    finally:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as drop:
            drop.execute(f'DROP SCHEMA IF EXISTS "{cost_schema}" CASCADE')
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 nodes, ~100 k readings")
    args = ap.parse_args(argv)
    from bench.__main__ import format_table

    print(format_table([{"bench": "console", **row} for row in run(quick=args.quick)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
