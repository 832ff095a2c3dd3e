"""SIM bytes per node-day, TLS and TCP/IP included, on a loopback HTTPS central (issue #22).

The shipped receiver (``streetnode-central serve --tls-cert --tls-key``, its own process) with a
throwaway PKI like a public one (root -> intermediate -> leaf, ECDSA P-256, the chain sent by the
server); the node's real `SqliteBuffer` and `Uploader` (TLS verified against the test root); between
them `bench.countproxy`, which counts every byte of both TCP streams and estimates TCP/IP headers.

Emulated time, the example config's node (`bench.backlog`: 10 channels every 10 s, 5 health
channels every 60 s): each round first puts the cycles of one upload interval, then runs one
`Uploader.run_round` with the agent's health keys. When the interval is longer than the central's
keep-alive (75 s), the proxy closes the idle connection first, as the central would, so the round
pays a new TCP and TLS handshake. Three weathers, each stated per node-day:

- *calm*: rounds every ``upload.interval`` (the example config's lazy 10 min);
- *storm*: sampling every 5 s, rounds every ``storm.upload_interval`` (10 s), connection kept;
- *the former default*: calm weather with rounds every 30 s.

``python -m bench.sim [--quick]``; needs the ``openssl`` CLI (skipped with a reason without it).
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import backlog, tls_cost
from bench.countproxy import CountingProxy, Counts
from bench.receiver import receiver
from node import __version__
from node.buffer import SqliteBuffer
from node.model import Sample, Stamp
from node.uploader import Uploader

NODE = "sim-node-1"
KEEP_ALIVE_S = 75  # central/server.py KEEP_ALIVE_S: idle connections closed after this
GOAL_MB = 1.5


def health(buf: SqliteBuffer, storm: bool, started: float) -> dict[str, Any]:
    """The health keys the agent sends with every batch (node/agent.py `Agent.health`)."""
    st = buf.stats()
    age = None if st.oldest_wall_ms is None else round(max(0.0, time.time() - st.oldest_wall_ms / 1000), 1)
    return {"storm": storm, "sensors_faulted": 0, "clock_synced": True,
            "uptime_s": int(time.time() - started) + 86_400, "readings_sampled": st.last_seq,
            "firmware": f"streetnode {__version__}", "config_hash": "3f9a0c1d2e4b5a67",
            "clock_offset_ms": 12, "backlog_readings": st.readings, "oldest_reading_age_s": age,
            "location_lat": 21.0285, "location_lon": 105.8542, "location_ward": "Hoan Kiem",
            "location_label": "Dinh Tien Hoang / Le Thai To, pole 17"}


def _storm_cycles(n: int, start_ms: int) -> list[tuple[Stamp, list[Sample]]]:
    """Sampling every 5 s (storm.interval): the calm series at twice the rate, flagged STORM."""
    from drivers.quality import Quality

    out = []
    for i, (stamp, samples) in enumerate(itertools.islice(backlog.cycles(10**9, start_ms=start_ms), n)):
        st = Stamp(start_ms + i * 5000, stamp.boot_ms - (stamp.wall_ms - start_ms - i * 5000), stamp.boot_id,
                   True)
        out.append((st, [Sample(s.channel, s.value, int(Quality.STORM)) for s in samples]))
    return out


def _weather(url: str, key: bytes, ca: Path, tmp: Path, name: str, *, interval_s: float, cycle_s: float,
             rounds: int, proxy: CountingProxy, storm: bool = False) -> dict[str, float]:
    """Bytes of ``rounds`` upload rounds ``interval_s`` apart, per node-day."""
    per_round = max(1, round(interval_s / cycle_s))
    start_ms = int(time.time() * 1000) - int(rounds * interval_s * 1000) - 60_000
    if storm:
        data = iter(_storm_cycles(per_round * rounds, start_ms))
    else:
        data = backlog.cycles(10**9, start_ms=start_ms)
    buf = SqliteBuffer(tmp / f"{name}.db", NODE)
    buf.open()
    started = time.time()
    up = Uploader(buf, url, key, NODE, ca_bundle=str(ca), health=lambda: health(buf, storm, started))
    proxy.drop_idle()
    proxy.take()
    readings = http = 0
    try:
        for _ in range(rounds):
            for stamp, samples in itertools.islice(data, per_round):
                buf.put(samples, stamp)
            if interval_s > KEEP_ALIVE_S:
                proxy.drop_idle()  # the central closed the idle connection long ago
            res = up.run_round()
            if res.error or not res.backlog_empty:
                raise RuntimeError(f"{name}: upload round failed: {res.error}")
            readings += res.readings
            http += res.bytes_sent + res.bytes_received
    finally:
        up.close()
        buf.close()
    time.sleep(0.05)  # let the proxy count the last bytes in flight
    counts: Counts = proxy.take()
    day = 86400 / (rounds * interval_s)
    return {"per_day": counts.ip_total() * day, "tls_payload_day": (counts.up + counts.down) * day,
            "per_round": counts.ip_total() / rounds, "connections": counts.connections,
            "readings_per_round": readings / rounds, "rounds": rounds, "http_per_round": http / rounds}


def run(quick: bool = False) -> list[dict]:
    if shutil.which("openssl") is None:
        print("bench/sim: skipped: the openssl CLI is needed to make the test certificates", file=sys.stderr)
        return []
    key = secrets.token_bytes(32)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    rows = []
    try:
        tls_cost.make_pki(tmp, san="IP:127.0.0.1")
        args = ["--tls-cert", str(tmp / "chain.pem"), "--tls-key", str(tmp / "leaf.key")]
        with receiver(f"sqlite:///{tmp / 'central.db'}", {NODE: key}, args) as (central_url, _store):
            port = int(central_url.rsplit(":", 1)[1])
            with CountingProxy(port) as proxy:
                url = f"https://127.0.0.1:{proxy.port}"
                ca = tmp / "root.pem"
                calm = _weather(url, key, ca, tmp, "calm", interval_s=600, cycle_s=10,
                                rounds=12 if quick else 144, proxy=proxy)
                storm = _weather(url, key, ca, tmp, "storm", interval_s=10, cycle_s=5,
                                 rounds=30 if quick else 360, proxy=proxy, storm=True)
                before = _weather(url, key, ca, tmp, "every30s", interval_s=30, cycle_s=10,
                                  rounds=30 if quick else 240, proxy=proxy)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for label, res, goal in (("calm, rounds every 10 min (upload.interval)", calm, f"≤ {GOAL_MB} MB"),
                             ("storm, rounds every 10 s, sampling every 5 s", storm, "report"),
                             ("calm, rounds every 30 s (the former default)", before, "report")):
        rows.append({"metric": f"SIM bytes per node-day incl. TLS + TCP/IP: {label}",
                     "value": round(res["per_day"] / 1e6, 3), "unit": "MB/day",
                     "baseline": "the same, TLS payload only (no TCP/IP)",
                     "baseline_value": round(res["tls_payload_day"] / 1e6, 3),
                     "ratio": round(res["per_day"] / res["tls_payload_day"], 3), "goal": goal})
        rows.append({"metric": f"SIM bytes per round ({label}; {res['readings_per_round']:.0f} readings,"
                               f" {res['connections']} connections in {res['rounds']} rounds)",
                     "value": round(res["per_round"]), "unit": "B/round", "baseline": "HTTP bytes only",
                     "baseline_value": round(res["http_per_round"]),
                     "ratio": round(res["per_round"] / res["http_per_round"], 3), "goal": ""})
    return rows


def main(argv: list[str]) -> int:
    from bench.__main__ import format_table

    print(format_table(run(quick="--quick" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
