"""The month soak (issue #22): 30 emulated days of a node, a 3-day outage of the central, a storm.

`bench.soak_node` runs as a process of its own (the real buffer on disk, the real uploader over
HTTPS to the real receiver, which it stops for the outage and starts again), on emulated time,
and reports every emulated hour: RSS, file descriptors, threads, the buffer's file size (database
+ WAL), bytes written towards the SD card, the backlog. This module runs it and turns the series
into table rows and a plot, ``docs/soak.png`` (full run; the quick run writes it to a temporary
directory), made with matplotlib — installed into the bench's own environment on first use, never
a node dependency; without it the plot is skipped with the reason printed.

Full: 30 days, outage days 10-13, storm day 20 for 12 h. Quick: 4 days, outage day 1-2, storm 3 h.
``python -m bench.soak [--quick]``
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import tls_cost

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "soak.png"
WARM_DAY = 1.0  # RSS growth is counted from the first day's end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def soak(quick: bool, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    tls_cost.make_pki(tmp, san="IP:127.0.0.1")
    (tmp / "state").mkdir()
    plan = {"days": 4 if quick else 30, "outage": [1.0, 2.0] if quick else [10.0, 13.0],
            "storm": [3.0, 3.125] if quick else [20.0, 20.5], "state_dir": str(tmp / "state"),
            "key": secrets.token_hex(32), "central_db": f"sqlite:///{tmp / 'central.db'}",
            "port": _free_port(), "cert": str(tmp / "chain.pem"), "tls_key": str(tmp / "leaf.key"),
            "ca": str(tmp / "root.pem")}
    (tmp / "plan.json").write_text(json.dumps(plan))
    from central.store import open_store  # the node process imports nothing of the central's

    st = open_store(plan["central_db"])
    try:
        st.add_node("soak-node-1", bytes.fromhex(plan["key"]), int(time.time() * 1000))
    finally:
        st.close()
    proc = subprocess.Popen([sys.executable, "-m", "bench.soak_node", str(tmp / "plan.json")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    series = [json.loads(line) for line in proc.stdout if line.startswith("{")]
    if proc.wait() != 0 or not series:
        raise RuntimeError(f"bench/soak: the node process failed (exit {proc.returncode})")
    return series, plan


def _stored(plan: dict[str, Any]) -> int:
    from central.store import open_store

    st = open_store(plan["central_db"])
    try:
        return st.count_readings()
    finally:
        st.close()


def rows_of(series: list[dict[str, Any]], plan: dict[str, Any], stored: int, seconds: float) -> list[dict]:
    out_start, out_end = plan["outage"]
    warm = next(s for s in series if s["day"] >= WARM_DAY)
    last = series[-1]
    before = [s["file_bytes"] for s in series if WARM_DAY <= s["day"] < out_start] or [warm["file_bytes"]]
    steady_file = statistics.median(before)
    peak_file = max(s["file_bytes"] for s in series)
    days = last["day"]
    sd_per_day = (last["sd_bytes"] - series[0]["sd_bytes"]) / max(days, 1e-9)
    steady_rss = statistics.median(s["rss_kib"] for s in series if s["day"] >= WARM_DAY) / 1024

    def row(metric: str, value: float, unit: str, goal: str = "", baseline: str = "-",
            base: float | None = None) -> dict:
        return {"metric": metric, "value": round(value, 3), "unit": unit, "baseline": baseline,
                "baseline_value": None if base is None else round(base, 3),
                "ratio": round(value / base, 3) if base else None, "goal": goal}

    return [
        row(f"emulated days (outage days {out_start:g}-{out_end:g}, storm day {plan['storm'][0]:g})", days,
            "days", "≥ 30 (full run)", "real seconds", seconds),
        row("readings stored at the central", stored, "readings", "all, exactly once",
            "readings sampled", last["uploaded"]),
        row("RSS growth after warm-up (day 1 → end)", (last["rss_kib"] - warm["rss_kib"]) / 1024, "MiB",
            "≤ 1 MiB", "RSS at day 1", warm["rss_kib"] / 1024),
        row("peak RSS (VmHWM) of the node process", last["hwm_kib"] / 1024, "MiB", "report",
            "steady RSS (median after day 1)", steady_rss),
        row(f"open file descriptors at the end (max {max(s['fds'] for s in series)})", last["fds"], "fds",
            "no growth", "at day 1", warm["fds"]),
        row(f"threads at the end (max {max(s['threads'] for s in series)})", last["threads"], "threads",
            "no growth", "at day 1", warm["threads"]),
        row("buffer file size after the drain (db + WAL)", last["file_bytes"] / 1024, "KiB",
            "back to the steady level", "steady before the outage", steady_file / 1024),
        row("buffer file size, peak (end of the outage)", peak_file / 1024, "KiB", "report",
            "steady before the outage", steady_file / 1024),
        row("SD bytes written per emulated day (puts, acks, checkpoints)", sd_per_day / 1e6, "MB/day",
            "report"),
    ]


def plot(series: list[dict[str, Any]], plan: dict[str, Any], dest: Path) -> str:
    """Write the PNG; returns where, or why not."""
    try:
        import matplotlib
    except ImportError:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            why = r.stderr.strip()[-200:]
            return f"plot skipped: matplotlib is not installed and pip could not install it ({why})"
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [s["day"] for s in series]
    panels = [("RSS (MiB)", [s["rss_kib"] / 1024 for s in series]),
              ("fds / threads", None),
              ("file, db+WAL (MiB)", [s["file_bytes"] / 2**20 for s in series]),
              ("SD written (GB)", [(s["sd_bytes"] - series[0]["sd_bytes"]) / 1e9 for s in series]),
              ("backlog (readings)", [s["backlog"] for s in series])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 11), sharex=True)
    for ax, (label, ys) in zip(axes, panels, strict=True):
        if ys is None:
            ax.plot(days, [s["fds"] for s in series], label="fds")
            ax.plot(days, [s["threads"] for s in series], label="threads")
            ax.legend(loc="upper right")
        else:
            ax.plot(days, ys)
        ax.set_ylabel(label)
        ax.axvspan(*plan["outage"], color="tab:red", alpha=0.12, lw=0)
        ax.axvspan(*plan["storm"], color="tab:blue", alpha=0.25, lw=0)
        ax.grid(alpha=0.3)
    axes[0].set_title("streetnode month soak: emulated time, real buffer + uploader + HTTPS central\n"
                      "(red: central down, blue: storm)")
    axes[-1].set_xlabel("emulated day")
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=80)
    plt.close(fig)
    return f"plot written to {dest}"


def run(quick: bool = False) -> list[dict]:
    if shutil.which("openssl") is None:
        print("bench/soak: skipped: the openssl CLI is needed to make the test certificates", file=sys.stderr)
        return []
    with tempfile.TemporaryDirectory(prefix="bench-soak-", dir="/var/tmp") as td:
        tmp = Path(td)
        t0 = time.monotonic()
        series, plan = soak(quick, tmp)
        seconds = time.monotonic() - t0
        stored = _stored(plan)
        rows = rows_of(series, plan, stored, seconds)
        (tmp / "series.json").write_text(json.dumps(series))
        dest = Path(tempfile.gettempdir()) / "soak-quick.png" if quick else PLOT
        print(f"bench/soak: {plot(series, plan, dest)}", file=sys.stderr)
    return rows


def main(argv: list[str]) -> int:
    from bench.__main__ import format_table

    print(format_table(run(quick="--quick" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
