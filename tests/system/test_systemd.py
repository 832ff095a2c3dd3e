"""The node as a pole runs it: Debian bookworm booted with systemd as PID 1, installed by
deploy/install.sh, proven through systemd itself (issue #10, part 1).

One container for the module; the tests run in order and each builds on the one before:
install central + node -> readiness, watchdog -> SIGSTOP (watchdog restart) -> SIGKILL ->
reload -> exactly once at the central -> installer re-run, crash loop -> journal -> uninstall.
Figures go to the end of pytest's output (tests/system/conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.system import rootfs, wheels
from tests.system.conftest import FIGURES, NOTES
from tests.system.container import Container

NODE_ID = "pole-1"
CENTRAL = "http://127.0.0.1:8080"
INSTALL = "/root/streetnode/deploy/install.sh"
PIP = ["--pip-arg=--no-index", "--pip-arg=--find-links=/root/wheels"]
WATCHDOG_S = 8  # the unit's is 60 s; 8 s keeps a margin for a loaded CI machine
DROP_IN = f"""[Service]
# test drop-in (tests/system): a short watchdog and restart delay, so a hang is caught in seconds
WatchdogSec={WATCHDOG_S}s
RestartSec=1s
TimeoutAbortSec=2s
"""
CONFIG = f"""[node]
id = "{NODE_ID}"
log_level = "info"

[node.location]
lat = 21.0285
lon = 105.8542
ward = "Hoan Kiem"
label = "system test pole"

[central]
url = "{CENTRAL}"
key_file = "/etc/streetnode/node.key"
read_timeout = "5s"

[[sensors]]
type = "bme280"
name = "weather"
interval = "1s"

[[sensors]]
type = "pm25"
name = "air"
interval = "1s"
enabled = {{air}}

[[sensors]]
type = "rain"
name = "rain"
pin = 17
interval = "2s"

[[sensors]]
type = "health"
name = "node"
interval = "5s"

[upload]
interval = "2s"
backoff_initial = "1s"
backoff_max = "4s"

[emulation]
enabled = true
scenario = "calm"
"""
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
# what Python's warnings module prints: "FILE.py:LINE: Category: message" and the source line after it
PY_WARNING = re.compile(r"(\.py:\d+: [A-Z]\w*: |\bwarnings\.warn\(|^\w*Warning: )", re.M)


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (debootstrap, overlayfs, systemd-nspawn)"
    missing = [t for t in ("systemd-nspawn", "debootstrap", "nsenter") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (deploy/ci-deps.sh installs them when run as root)"
    return None


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"systemd system test not run: {REASON}")


# ---------------------------------------------------------------- the container
def checkout_files() -> bytes:
    """What a technician's clone holds: tracked and new files, no venv, caches or .git."""
    return subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def pole():
    t0 = time.monotonic()
    cache = rootfs.cache_dir()
    tree = rootfs.ensure_tree()
    house = wheels.ensure_wheelhouse(cache, ROOT)
    prepared_s = time.monotonic() - t0
    with Container(tree, cache / "runs") as c:
        FIGURES["container boot (systemd-nspawn to 'running')"] = f"{c.boot_s:.2f} s"
        FIGURES["tree + wheels (cached after the first run)"] = f"{prepared_s:.1f} s"
        dest = c.path("/root/streetnode")
        dest.mkdir(parents=True)
        files = [f for f in checkout_files().split(b"\0") if f and (ROOT / f.decode()).exists()]
        tar = subprocess.run(["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", "-"],
                             input=b"\0".join(files), capture_output=True, check=True).stdout
        subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=tar, check=True)
        shutil.copytree(house, c.path("/root/wheels"))
        yield c
        root = c.root
    # the container is gone even when a test failed: no nspawn process, no overlay mount
    assert c.proc is None and str(root) not in Path("/proc/mounts").read_text()
    FIGURES["time the system test adds to make test"] = f"{time.monotonic() - t0:.0f} s"


def show(c: Container, unit: str, *props: str) -> dict[str, str]:
    out = c.run("systemctl", "show", unit, *(f"-p{p}" for p in props)).stdout
    found: dict[str, str] = {}
    for key, _, value in (line.partition("=") for line in out.splitlines() if "=" in line):
        found[key] = f"{found[key]}, {value}" if key in found else value  # DeviceAllow= repeats
    return found


def main_pid(c: Container, unit: str = "streetnode") -> int:
    return int(show(c, unit, "MainPID")["MainPID"])


def wait(pred, timeout_s: float, what: str, step_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def active_with_new_pid(c: Container, old_pid: int) -> int | None:
    s = show(c, "streetnode", "ActiveState", "SubState", "MainPID")
    pid = int(s["MainPID"])
    running = s["ActiveState"] == "active" and s["SubState"] == "running"
    return pid if running and pid not in (0, old_pid) else None


def ready_s(c: Container) -> float:
    """Seconds from the main process's start to READY=1 (systemd's own timestamps)."""
    s = show(c, "streetnode", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    return (int(s["ActiveEnterTimestampMonotonic"]) - int(s["ExecMainStartTimestampMonotonic"])) / 1e6


def central_cli(c: Container, *args: str) -> str:
    """`streetnode-central ARGS` as the service's own (dynamic) user, on the service's store."""
    return c.run("systemd-run", "--wait", "--pipe", "--quiet", "-p", "DynamicUser=yes", "-p",
                 "User=streetnode-central", "-p", "StateDirectory=streetnode-central",
                 "/opt/streetnode-central/venv/bin/streetnode-central", *args,
                 "--db", "sqlite:////var/lib/streetnode-central/central.db").stdout


def api(c: Container, path: str) -> dict:
    """The central's read API (Bearer API token), from inside the container (its own loopback)."""
    auth = {"Authorization": f"Bearer {STATE['token']}"}
    code = ("import sys, urllib.request; "
            f"r = urllib.request.Request('{CENTRAL}{path}', headers={auth!r}); "
            "sys.stdout.write(urllib.request.urlopen(r, timeout=10).read().decode())")
    return json.loads(c.run("python3", "-c", code).stdout)


def node_status(c: Container) -> dict:
    return json.loads(c.run("/opt/streetnode/venv/bin/streetnode", "status", "--json",
                            "--config", "/etc/streetnode/config.toml").stdout)


def last_seq(c: Container) -> int:
    return int(node_status(c)["backlog"]["last_seq"])


def write_config(c: Container, *, air: bool = True) -> None:
    """As an operator's editor does: the file's mode and owner stay (the installer set them)."""
    path = c.path("/etc/streetnode/config.toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG.replace("{air}", "true" if air else "false"))


# ---------------------------------------------------------------- the tests, in order
STATE: dict[str, object] = {}


def test_install_central_and_node_and_both_units_are_active(pole):
    c = pole
    r = c.run("bash", INSTALL, "--central", *PIP, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "streetnode-central.service active" in r.stdout
    key = central_cli(c, "node", "add", NODE_ID).split()[0]
    assert re.fullmatch(r"[0-9a-f]{64}", key), key
    STATE["token"] = central_cli(c, "token", "add", "system-test").split()[0]
    write_config(c)  # the pole's prepared config (emulated hardware); the installer keeps it
    t0 = time.monotonic()
    r = c.run("bash", INSTALL, "--node-id", NODE_ID, "--central-url", CENTRAL, "--key-file", "-", "--emulate",
              *PIP, input=key + "\n", timeout=600, check=False)
    FIGURES["node install (venv from local wheels, unit, readiness, diag)"] = f"{time.monotonic() - t0:.1f} s"
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"streetnode\.service active \(main PID \d+\)", r.stdout), r.stdout[-2000:]
    states = c.run("systemctl", "is-active", "streetnode", "streetnode-central").stdout.split()
    assert states == ["active", "active"]
    FIGURES["systemctl start to READY=1, first start after install"] = f"{ready_s(c):.2f} s"


def test_the_daemon_runs_the_optimized_byte_code_its_exec_start_pre_wrote(pole):
    """The unit's ``-``-prefixed ExecStartPre (``python -m node.bytecode``) must really write the
    -OO byte code into the cache directory (a failure there is silent by design), and the daemon
    must run with the environment that makes Python use it (docs/agent.md, #22)."""
    c = pole
    cache = c.path("/var/cache/streetnode/pycache")
    manifest = cache / "streetnode-bytecode.txt"
    assert manifest.is_file(), "ExecStartPre wrote no byte code manifest"
    sources = manifest.read_text().splitlines()
    assert any(s.endswith("/node/agent.py") for s in sources), sources[:5]
    agent_pyc = [p for p in cache.rglob("agent.*.opt-2.pyc") if p.parent.name == "node"]
    assert agent_pyc, "no -OO byte code of node/agent.py in the cache"
    pid = main_pid(c, "streetnode")
    read = f"import sys; sys.stdout.write(open('/proc/{pid}/environ', 'rb').read().decode())"
    env = dict(item.split("=", 1) for item in c.run("python3", "-c", read).stdout.split("\0") if "=" in item)
    assert env.get("PYTHONOPTIMIZE") == "2", env
    assert env.get("PYTHONPYCACHEPREFIX") == "/var/cache/streetnode/pycache", env


def test_readiness_comes_through_notify_and_watchdog_pings_arrive(pole):
    c = pole
    c.path("/etc/systemd/system/streetnode.service.d").mkdir(parents=True, exist_ok=True)
    c.path("/etc/systemd/system/streetnode.service.d/test-watchdog.conf").write_text(DROP_IN)
    c.run("systemctl", "daemon-reload")
    c.run("systemctl", "restart", "streetnode")  # Type=notify: returns once READY=1 arrived
    s = show(c, "streetnode", "Type", "NotifyAccess", "WatchdogUSec", "ActiveState")
    assert (s["Type"], s["NotifyAccess"], s["ActiveState"]) == ("notify", "main", "active")
    assert s["WatchdogUSec"] in (f"{WATCHDOG_S}s", str(WATCHDOG_S * 1_000_000))
    took_s = ready_s(c)
    assert 0 < took_s < 30
    FIGURES["systemctl restart to READY=1 (warm)"] = f"{took_s:.2f} s"
    pings = []
    for _ in range(3):
        time.sleep(WATCHDOG_S / 2 + 0.5)
        pings.append(int(show(c, "streetnode", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]))
    assert pings[0] < pings[1] < pings[2], pings  # WATCHDOG=1 keeps arriving
    assert show(c, "streetnode", "StatusText")["StatusText"]  # STATUS= from the agent
    wait(lambda: last_seq(c) > 20, 30, "readings in the node's buffer")


def test_sigstop_hang_is_restarted_by_the_watchdog(pole):
    c = pole
    pid = main_pid(c)
    STATE["before_stop"] = last_seq(c)
    t0 = time.monotonic()
    c.run("kill", "-STOP", str(pid))
    new = wait(lambda: active_with_new_pid(c, pid), 60, "a restart after the watchdog timeout")
    restart_s = time.monotonic() - t0
    log = c.run("journalctl", "-u", "streetnode", "-o", "cat", "--no-pager").stdout
    assert "Watchdog timeout" in log, log[-2000:]
    FIGURES["kill -STOP to a new, ready main PID (watchdog restart)"] = \
        f"{restart_s:.1f} s (test drop-in: WatchdogSec={WATCHDOG_S}s, TimeoutAbortSec=2s, RestartSec=1s)"
    STATE["pid"] = new


def test_sigkill_is_restarted(pole):
    c = pole
    pid = main_pid(c)
    wait(lambda: last_seq(c) > int(STATE["before_stop"]) + 10, 30, "new readings after the watchdog restart")
    STATE["before_kill"] = last_seq(c)
    t0 = time.monotonic()
    c.run("kill", "-9", str(pid))
    wait(lambda: active_with_new_pid(c, pid), 30, "a restart after SIGKILL")
    FIGURES["kill -9 to a new, ready main PID"] = f"{time.monotonic() - t0:.1f} s (RestartSec=1s)"


def test_reload_puts_the_new_config_in_force(pole):
    c = pole
    pid = main_pid(c)
    wait(lambda: last_seq(c) > int(STATE["before_kill"]) + 10, 30, "new readings after the SIGKILL restart")
    write_config(c, air=False)
    c.run("systemctl", "reload", "streetnode")
    wait(lambda: "configuration reloaded" in c.run("journalctl", "-u", "streetnode", "-o", "cat",
                                                    "--no-pager").stdout, 20, "the reload in the journal")
    assert main_pid(c) == pid  # reloaded, not restarted
    after_ms = int(time.time() * 1000) + 3000
    time.sleep(8)
    air = api(c, f"/v1/nodes/{NODE_ID}/readings?channel=air.pm2_5_ugm3&since={after_ms}")
    weather = api(c, f"/v1/nodes/{NODE_ID}/readings?channel=weather.temperature_c&since={after_ms}")
    assert air["count"] == 0, air  # the disabled sensor is no longer sampled
    assert weather["count"] > 0, weather  # the others go on
    sensors = {s["name"] for s in node_status(c)["sensors"]}
    assert "air" not in sensors and "weather" in sensors, sensors


def test_every_reading_before_and_after_each_restart_is_at_the_central_exactly_once(pole):
    c = pole

    def drained() -> dict | None:
        status = node_status(c)
        return status if status["backlog"]["readings"] == 0 else None

    status = wait(drained, 60, "the node's buffer drained")  # the node keeps sampling meanwhile
    epoch, final = int(status["backlog"]["epoch"]), int(status["backlog"]["last_seq"])
    got = api(c, f"/v1/nodes/{NODE_ID}/readings?limit=100000")["readings"]
    latest = last_seq(c)  # readings sampled after the snapshot may be at the central already
    keys = [(r["epoch"], r["seq"]) for r in got]
    assert len(keys) == len(set(keys)), "a reading stored twice"
    stored = {(epoch, s) for s in range(1, final + 1)}
    assert stored <= set(keys), f"missing at the central: {sorted(stored - set(keys))[:20]}"
    sampled = {(epoch, s) for s in range(1, latest + 1)}
    assert set(keys) <= sampled, "the central has readings the node never had"
    node = next(n for n in api(c, "/v1/nodes")["nodes"] if n["node_id"] == NODE_ID)
    assert node["gaps"] == 0 and node["missing_readings"] == 0, node
    assert node["firmware"] and node["backlog_readings"] is not None, node
    before_stop, before_kill = int(STATE["before_stop"]), int(STATE["before_kill"])
    FIGURES["readings (seq) stored by the node before kill -STOP / before kill -9 / when drained"] = \
        f"{before_stop} / {before_kill} / {final}; at the central: seq 1..{final} each exactly once " \
        f"({len(keys)} rows, {len(set(keys))} distinct, incl. {len(keys) - final} sampled since), gaps 0"


def test_installer_rerun_changes_nothing_and_keeps_the_main_pid(pole):
    c = pole
    pid, central_pid = main_pid(c), main_pid(c, "streetnode-central")
    r = c.run("bash", INSTALL, "--no-diag", *PIP, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "install.sh: 0 changes", r.stdout[-2000:]
    r = c.run("bash", INSTALL, "--central", *PIP, timeout=300, check=False)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "install.sh: 0 changes", r.stdout
    assert (main_pid(c), main_pid(c, "streetnode-central")) == (pid, central_pid)


def test_installer_fails_with_the_journal_when_the_service_crash_loops(pole):
    c = pole
    c.run("systemctl", "stop", "streetnode")
    good = c.path("/etc/streetnode/config.toml").read_text()
    bad = good.replace('log_level = "info"', 'log_level = "info"\nstate_dir = "/proc/no-such-dir"')
    c.path("/etc/streetnode/config.toml").write_text(bad)
    r = c.run("bash", INSTALL, "--no-diag", *PIP, timeout=300, check=False)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "streetnode.service did not become active" in r.stderr
    assert "/proc/no-such-dir" in r.stderr  # the agent's own last words, from the journal
    c.path("/etc/streetnode/config.toml").write_text(good)
    r = c.run("bash", INSTALL, "--no-diag", *PIP, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert c.run("systemctl", "is-active", "streetnode").stdout.strip() == "active"


def test_journal_has_no_traceback_and_no_python_warning(pole):
    c = pole
    for unit in ("streetnode", "streetnode-central"):
        log = c.run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout
        assert log.strip(), f"no journal for {unit}"
        assert not TRACEBACK.search(log), log[-3000:]
        found = PY_WARNING.findall(log)
        assert not found, found[:5]


def test_device_policy_closed_denies_what_is_not_allowed(pole):
    c = pole
    s = show(c, "streetnode", "DevicePolicy", "DeviceAllow")
    assert s["DevicePolicy"] == "closed"
    opener = "open('/dev/net/tun', 'rb'); print('opened')"
    props = ["-p", "DevicePolicy=closed", "-p", "DeviceAllow=char-i2c rw",
             "-p", "DeviceAllow=char-gpiochip rw"]
    denied = c.run("systemd-run", "--wait", "--pipe", "--quiet", *props, "python3", "-c", opener, check=False)
    opened = c.run("systemd-run", "--wait", "--pipe", "--quiet", "python3", "-c", opener, check=False)
    assert opened.returncode == 0 and "opened" in opened.stdout, opened.stderr  # the check can fail
    assert denied.returncode != 0, denied.stdout
    assert "Operation not permitted" in denied.stderr, denied.stderr
    classes = c.run("cat", "/proc/devices").stdout.split()
    if "i2c" not in classes or "gpiochip" not in classes:
        NOTES.append("DeviceAllow=char-i2c/char-gpiochip cannot be proven here: this kernel has no i2c or "
                     "gpiochip device class (/proc/devices); DevicePolicy=closed was shown to deny "
                     f"/dev/net/tun (the unit's DeviceAllow={s['DeviceAllow'] or 'nothing'})")


def test_uninstall_and_purge_leave_what_docs_install_md_says(pole):
    c = pole
    r = c.run("bash", INSTALL, "--uninstall", check=False)
    assert r.returncode == 0, r.stderr
    for gone in ("/opt/streetnode", "/etc/systemd/system/streetnode.service",
                 "/etc/systemd/system/multi-user.target.wants/streetnode.service",
                 "/etc/modules-load.d/streetnode.conf"):
        assert not c.path(gone).exists(), gone
    for kept in ("/etc/streetnode/config.toml", "/etc/streetnode/node.key", "/var/lib/streetnode/buffer.db"):
        assert c.path(kept).exists(), kept
    assert c.run("systemctl", "is-active", "streetnode", check=False).stdout.strip() != "active"
    r = c.run("bash", INSTALL, "--uninstall", "--purge", check=False)
    assert r.returncode == 0, r.stderr
    assert not c.path("/etc/streetnode").exists() and not c.path("/var/lib/streetnode").exists()
    passwd = c.path("/etc/passwd").read_text()
    groups = c.path("/etc/group").read_text()
    assert "\nstreetnode:" not in "\n" + passwd
    assert "\ni2c:" in "\n" + groups and "\ngpio:" in "\n" + groups  # other software may use them
    r = c.run("bash", INSTALL, "--central", "--uninstall", check=False)
    assert r.returncode == 0, r.stderr
    assert not c.path("/opt/streetnode-central").exists()
    assert c.path("/var/lib/private/streetnode-central/central.db").exists()  # the store is kept
    r = c.run("bash", INSTALL, "--central", "--uninstall", "--purge", check=False)
    assert r.returncode == 0, r.stderr
    assert not c.path("/var/lib/private/streetnode-central").exists()
