"""Agent footprint: cold start to the first durable reading, steady RSS, RSS growth over a long run.

Every figure sits beside the bare interpreter (``python -c pass`` for start-up,
an idle ``python`` for RSS) measured in the same run on the same machine. The
node runs as a real ``streetnode run`` process with the example config
(deploy/config.example.toml) on emulated hardware, uploading to a real
receiver on loopback. ``python -m bench.agent [--quick]``.

The node runs from compiled bytecode, as installed (pip compiles every module of
the wheel): the project's packages are byte-compiled first, so a
``PYTHONDONTWRITEBYTECODE`` environment does not make every start recompile
them from source (~2 MiB RSS, ~35 ms). The environment is the unit's
(systemd/streetnode.service ``Environment=`` lines): with its ``PYTHONOPTIMIZE=2`` the
daemon reads ``.opt-2.pyc`` files from ``PYTHONPYCACHEPREFIX`` (here a directory of the
bench's, `PYCACHE`), written first by what the unit's ``ExecStartPre`` runs
(``python -m node.bytecode``); its time on a warm cache is a row of its own.
"""

from __future__ import annotations

import compileall
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import tls_cost

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "config.example.toml"
NODE_ID = "hn-hoankiem-0042"
MIB = 1024 * 1024


UNIT = ROOT / "systemd" / "streetnode.service"
# the unit's CacheDirectory (PYTHONPYCACHEPREFIX) for the bench's node processes: keyed by the
# sources' absolute paths, so checkouts side by side do not mix
PYCACHE = Path(tempfile.gettempdir()) / "streetnode-bench-pycache"


def unit_environment() -> dict[str, str]:
    """The ``Environment=NAME=VALUE`` lines of the node's systemd unit."""
    env = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for item in line.split("=", 1)[1].split():
                name, _, value = item.partition("=")
                env[name] = value
    return env


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM", "STREETNODE_CONFIG")}
    env.update(unit_environment())
    if "PYTHONPYCACHEPREFIX" in env:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = str(ROOT)
    return env


def unit_prestart() -> float:
    """What the unit's ExecStartPre runs (``python -m node.bytecode``) in the daemon's environment,
    as on a pole (no ``PYTHONDONTWRITEBYTECODE``); seconds it took."""
    env = _env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "node.bytecode"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"bench: python -m node.bytecode failed: {r.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def compile_project() -> None:
    """Byte-compile the node's packages into __pycache__, as pip does when it installs the wheel."""
    for pkg in ("node", "drivers"):
        if not compileall.compile_dir(str(ROOT / pkg), quiet=1):
            raise RuntimeError(f"bench: {pkg} does not compile")


def example_config(tmp: Path, url: str, key: bytes, *, fast: float | None = None, speed: float = 1.0,
                   ca: Path | None, node_id: str) -> Path:
    """The example config, pointed at tmp and the local receiver, on emulated hardware; ``ca``:
    the test root the receiver's HTTPS certificate chains to."""
    text = EXAMPLE.read_text()
    kf = tmp / "node.key"
    kf.write_text(key.hex())
    kf.chmod(0o600)
    subs = [
        ('state_dir = "/var/lib/streetnode"', f'state_dir = "{tmp / "state"}"'),
        (f'id = "{NODE_ID}"', f'id = "{node_id}"'),
        ('url = "https://central.example.org"', f'url = "{url}"'),
        ('key_file = "/etc/streetnode/node.key"', f'key_file = "{kf}"'),
        ("enabled = false         # true: run on emulated", "enabled = true         # true: run on emulated"),
        ("speed = 1.0", f"speed = {speed}"),
        ('log_level = "info"', 'log_level = "warning"'),
    ]
    if ca is not None:
        subs.append(('# ca_bundle = "/etc/streetnode/ca.pem"', f'ca_bundle = "{ca}"'))
    for a, b in subs:
        if a not in text:
            raise RuntimeError(f"bench: {EXAMPLE} no longer contains {a!r}")
        text = text.replace(a, b)
    if fast is not None:  # a long run compressed: every sensor samples `fast` times as often
        def faster(m: re.Match) -> str:  # health's interval is at least 1 s
            s = int(m.group(1)) / fast
            return f'interval = "{max(s, 1.0) if m.group(1) == "60" else s:g}s"'

        text = re.sub(r'^interval = "(10|60)s"', faster, text, flags=re.M)
        text = re.sub(r'^interval = "10m"', f'interval = "{600 / fast:g}s"', text, flags=re.M)  # uploads
    p = tmp / "config.toml"
    p.write_text(text)
    return p


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bare_start_s(n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bare_rss_kib() -> int:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return rss_kib(p.pid)
    finally:
        p.kill()
        p.wait()


def _start(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "-v", "run"], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def cold_start_s(url: str, key: bytes, n: int, ca: Path | None, new_node: Callable[[], str]) -> float:
    """Process start to the log line of the first durable reading, fresh state dir each time."""
    times = []
    for _ in range(n):
        with tempfile.TemporaryDirectory() as td:
            cfg = example_config(Path(td), url, key, ca=ca, node_id=new_node())
            t0 = time.perf_counter()
            p = _start(cfg)
            assert p.stderr is not None
            found = None
            for line in p.stderr:
                if "first cycle durable" in line:
                    found = time.perf_counter() - t0
                    break
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=10)
            if found is None:
                raise RuntimeError("bench: the node never reported a durable reading")
            times.append(found)
    return statistics.median(times)


def _drain_stderr(p: subprocess.Popen) -> threading.Thread:
    t = threading.Thread(target=lambda: p.stderr and p.stderr.read(), daemon=True)
    t.start()
    return t


def soak(url: str, key: bytes, seconds: float, *, fast: float | None, speed: float,
         ca: Path | None, node_id: str) -> tuple[int, int, int]:
    """(RSS after warm-up, RSS at the end, max RSS seen) in KiB of a node running ``seconds``."""
    with tempfile.TemporaryDirectory() as td:
        cfg = example_config(Path(td), url, key, fast=fast, speed=speed, ca=ca, node_id=node_id)
        p = _start(cfg)
        _drain_stderr(p)
        time.sleep(1.0)
        if p.poll() is not None:
            raise RuntimeError(f"bench: the node exited with {p.returncode} (config {cfg})")
        try:
            warm = min(10.0, seconds / 4) if fast is None else max(35.0, seconds / 4)  # past an upload
            time.sleep(warm)
            first = rss_kib(p.pid)
            peak = first
            t_end = time.monotonic() + seconds - warm
            while time.monotonic() < t_end:
                time.sleep(1.0)
                peak = max(peak, rss_kib(p.pid))
            last = rss_kib(p.pid)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        return first, last, peak


def run(quick: bool = False) -> list[dict]:
    from central.server import serve_in_thread

    from central.store import open_store

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as td:
        store = open_store(f"sqlite:///{Path(td) / 'central.db'}")
        key = secrets.token_bytes(32)
        nodes: list[str] = []

        def new_node() -> str:
            """A node id of its own for each start: each starts with a fresh state directory, and one
            id restarted on an empty buffer is what a rolled-back SD card looks like to the central."""
            nodes.append(f"hn-bench-{len(nodes) + 1:04d}")
            store.add_node(nodes[-1], key, int(time.time() * 1000))
            return nodes[-1]

        ca: Path | None = None
        tls: dict[str, str] = {}
        if shutil.which("openssl") is not None:  # HTTPS, as on a pole (#22): TLS costs RAM too
            tls_cost.make_pki(Path(td), san="IP:127.0.0.1")
            ca = Path(td) / "root.pem"
            tls = {"tls_cert": str(Path(td) / "chain.pem"), "tls_key": str(Path(td) / "leaf.key")}
        else:
            print("bench/agent: no openssl CLI for a test certificate: the node talks plain HTTP",
                  file=sys.stderr)
        url, stop = serve_in_thread(store, host="127.0.0.1", port=0, **tls)
        scheme = "HTTPS" if tls else "HTTP"
        try:
            compile_project()
            unit_prestart()  # a first start (or an upgrade): writes the byte code
            prestart_s = statistics.median(unit_prestart() for _ in range(3 if quick else 7))
            bare_s = bare_start_s(5 if quick else 15)
            bare_rss = bare_rss_kib()
            cold = cold_start_s(url, key, 3 if quick else 7, ca, new_node)
            rows.append(_row("cold start to first durable reading", cold * 1000, "ms",
                             "python -c pass", bare_s * 1000, "<= 500 ms"))
            rows.append(_row("unit ExecStartPre before it (python -m node.bytecode, cache current)",
                             prestart_s * 1000, "ms", "python -c pass", bare_s * 1000, "report"))
            w, e, peak = soak(url, key, 15 if quick else 60, fast=None, speed=1.0, ca=ca, node_id=new_node())
            rows.append(_row(f"steady RSS, example config, {scheme} to the central", e / 1024, "MiB",
                             "idle python", bare_rss / 1024, "<= 33 MiB"))
            secs = 60 if quick else 300
            w, e, peak = soak(url, key, secs, fast=100, speed=720.0, ca=ca, node_id=new_node())
            rows.append(_row(f"RSS growth over {secs}s, sampling 100x the example rate",
                             (e - w) / 1024, "MiB", "RSS after warm-up", w / 1024, "~0 (no growth)"))
            rows.append(_row(f"peak RSS in the long run, {scheme}", peak / 1024, "MiB", "idle python",
                             bare_rss / 1024, "<= 35 MiB"))
            stored = sum(map(store.count_readings, nodes))
            rows.append(_row("readings stored at the central", stored, "readings", "-", 0,
                             "all uploads landed"))
        finally:
            stop()
            store.close()
    return rows


def _row(metric: str, value: float, unit: str, baseline: str, base: float, goal: str) -> dict:
    return {"metric": metric, "value": round(value, 2), "unit": unit, "baseline": baseline,
            "baseline_value": round(base, 2), "ratio": round(value / base, 2) if base else None, "goal": goal}


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(f"{r['metric']:<62} {r['value']:>9} {r['unit']:<8} vs {r['baseline']} "
              f"{r['baseline_value']} (x{r['ratio']})  goal {r['goal']}")
