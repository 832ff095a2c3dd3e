"""`make bench` / `python -m bench [--quick] [NAME ...]`: every benchmark, one table.

Each module under bench/ exposes ``run(quick: bool) -> list[dict]`` with rows
``metric, value, unit, baseline, baseline_value, ratio, goal``; baselines are
measured in the same run, so the ratios compare like with like. (backlog, countproxy,
receiver, soak_node and tls_cost are helpers of these, not benchmarks.) The first line names the
machine, its load average before and after, and the run's duration.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time

BENCHMARKS = ["buffer", "drain", "ingest_rate", "agent", "drivers", "forward", "storm", "alerts", "sim",
              "soak", "reads", "console", "under_attack", "growth"]


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def machine() -> str:
    """CPU model and count, memory, OS and Python: what the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    mem = ""
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return (f"{model}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def format_table(rows: list[dict]) -> str:
    head = ["benchmark", "metric", "value", "unit", "baseline (same run)", "baseline", "ratio", "goal"]
    body = [[r.get("bench", ""), r["metric"], _fmt(r["value"]), r.get("unit", ""), r.get("baseline") or "-",
             _fmt(r.get("baseline_value")), _fmt(r.get("ratio")), r.get("goal") or ""] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
              for row in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (minutes -> seconds)")
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; expected one of {', '.join(BENCHMARKS)}")
    rows: list[dict] = []
    load_before = _load()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.monotonic()
    for name in args.names or BENCHMARKS:
        print(f"running bench/{name}.py ...", file=sys.stderr, flush=True)
        mod = importlib.import_module(f"bench.{name}")
        for row in mod.run(quick=args.quick):
            rows.append({"bench": name, **row})
    print(f"# {machine()}; {started}, {'quick' if args.quick else 'full'} sizes, "
          f"{time.monotonic() - t0:.0f} s; load average (1/5/15 min) before {load_before}, after {_load()}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
