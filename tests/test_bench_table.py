"""`python -m bench`: one table of every benchmark (timings stay in bench/, nothing timed here)."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

from bench.__main__ import BENCHMARKS, format_table, main

ROOT = Path(__file__).resolve().parent.parent
ROW_KEYS = {"metric", "value", "unit", "baseline", "baseline_value", "ratio", "goal"}


def test_every_benchmark_module_offers_run_quick():
    on_disk = {p.stem for p in (ROOT / "bench").glob("*.py")} - {"__init__", "__main__"}
    # used by the benchmarks, no table rows of their own
    helpers = {"attacks", "backlog", "countproxy", "receiver", "soak_node", "tls_cost"}
    assert set(BENCHMARKS) == on_disk - helpers
    for name in BENCHMARKS:
        run = importlib.import_module(f"bench.{name}").run
        assert "quick" in inspect.signature(run).parameters, name


def test_format_table_puts_each_figure_beside_its_baseline_and_ratio():
    rows = [{"bench": "drain", "metric": "drain rate", "value": 123456.7, "unit": "readings/s",
             "baseline": "raw Store.ingest", "baseline_value": 246913.4, "ratio": 0.5, "goal": "≥ 0.5×"},
            {"bench": "agent", "metric": "RSS growth", "value": 0.0, "unit": "MiB", "baseline": "",
             "baseline_value": None, "ratio": None, "goal": ""}]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "benchmark", "metric", "value", "unit", "baseline (same run)", "baseline", "ratio", "goal"]
    assert set(lines[1]) == {"|", "-"}
    assert [c.strip() for c in lines[2].strip("|").split("|")] == [
        "drain", "drain rate", "123,457", "readings/s", "raw Store.ingest", "246,913", "0.5", "≥ 0.5×"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == [
        "agent", "RSS growth", "0", "MiB", "-", "-", "-", ""]
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_quick_run_of_one_benchmark_prints_the_machine_and_one_table_row_per_figure(capsys):
    assert main(["--quick", "drivers"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# ") and "CPUs" in out[0] and "quick sizes" in out[0]
    body = [line for line in out[3:] if line.startswith("| drivers ")]
    assert len(body) == 3 and len(out) == 3 + 3
    rows = importlib.import_module("bench.drivers").run(quick=True)
    for row in rows:
        assert row.keys() >= ROW_KEYS, row
        assert isinstance(row["value"], int | float) and row["value"] > 0


def test_an_unknown_benchmark_name_is_refused_with_the_list():
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "nope"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert "unknown benchmark 'nope'" in p.stderr and "drain" in p.stderr and "Traceback" not in p.stderr
