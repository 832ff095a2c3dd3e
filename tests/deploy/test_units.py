"""systemd/streetnode.service and streetnode-central.service: verify, exposure score, and the
settings the node depends on (notify + watchdog, devices, no wait for network or time sync)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import UNITS

ANALYZE = shutil.which("systemd-analyze")


def analyze_bin() -> str:
    """systemd-analyze, or skip (fail under CI=true: make test installs it there)."""
    if ANALYZE:
        return ANALYZE
    if os.environ.get("CI"):
        pytest.fail("systemd-analyze missing in CI: deploy/ci-deps.sh (make test) should have installed it")
    pytest.skip("systemd-analyze not installed (make test installs Debian's systemd when run as root)")


NODE = UNITS / "streetnode.service"
CENTRAL = UNITS / "streetnode-central.service"


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> ordered (key, value) pairs; repeated keys kept (DeviceAllow=, SystemCallFilter=)."""
    out: dict[str, list[tuple[str, str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    vals = values(unit, section, key)
    assert len(vals) == 1, f"{section}.{key}: {vals}"
    return vals[0]


# ---------------------------------------------------------------- what the node agent needs
def test_node_unit_is_notify_with_watchdog_and_restarts():
    u = parse_unit(NODE)
    assert one(u, "Service", "Type") == "notify"
    assert one(u, "Service", "NotifyAccess") == "main"
    assert one(u, "Service", "WatchdogSec") == "60s"
    assert one(u, "Service", "Restart") == "always"
    assert one(u, "Service", "RestartSec") == "10s"
    assert one(u, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(u, "Service", "ExecStart") == \
        "/opt/streetnode/venv/bin/streetnode run --config /etc/streetnode/config.toml"
    assert one(u, "Unit", "StartLimitBurst") == "10"
    assert one(u, "Service", "User") == "streetnode"
    assert one(u, "Service", "StateDirectory") == "streetnode"
    assert one(u, "Service", "ConfigurationDirectory") == "streetnode"


def test_node_unit_never_waits_for_network_or_time_sync():
    u = parse_unit(NODE)
    deps = " ".join(values(u, "Unit", "After") + values(u, "Unit", "Wants") + values(u, "Unit", "Requires"))
    assert "network-online.target" not in deps and "time-sync.target" not in deps
    assert "time-set.target" in values(u, "Unit", "After")[0]


def test_node_unit_allows_only_i2c_and_gpio_devices():
    u = parse_unit(NODE)
    assert one(u, "Service", "DevicePolicy") == "closed"
    assert sorted(values(u, "Service", "DeviceAllow")) == ["char-gpiochip rw", "char-i2c rw"]
    assert values(u, "Service", "PrivateDevices") == []  # it would hide /dev/i2c-* and /dev/gpiochip*
    assert one(u, "Service", "SupplementaryGroups") == "i2c gpio"
    assert one(u, "Service", "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6"
    assert values(u, "Service", "SystemCallFilter")[0] == "@system-service"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert one(u, "Service", key) == "yes"
    assert one(u, "Service", "ProtectSystem") == "strict"
    # the health sensor reads /proc/loadavg and /proc/uptime: ProcSubset=pid would hide them
    assert values(u, "Service", "ProcSubset") in ([], ["all"])


def test_central_unit_runs_serve_from_its_own_venv():
    u = parse_unit(CENTRAL)
    start = one(u, "Service", "ExecStart")
    assert start.startswith("/opt/streetnode-central/venv/bin/streetnode-central serve --listen ")
    env = values(u, "Service", "Environment")
    assert any(v.startswith("STREETNODE_CENTRAL_LISTEN=127.0.0.1:") for v in env)
    assert one(u, "Service", "EnvironmentFile") == "-/etc/streetnode-central/central.env"
    assert one(u, "Service", "PrivateDevices") == "yes"
    assert one(u, "Service", "StateDirectory") == "streetnode-central"


# ---------------------------------------------------------------- systemd-analyze
def _analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze_bin(), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def verify_root(pristine, wheel, tmp_path_factory) -> Path:
    """The staged node install plus the central installed the documented way, in a tree that
    also holds this machine's systemd unit library and /bin/kill, so `verify --root` resolves
    every unit and ExecStart=/ExecReload= binary for real."""
    root = tmp_path_factory.mktemp("verify") / "root"
    shutil.copytree(pristine[0], root, symlinks=True)
    venv = root / "opt/streetnode-central/venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    subprocess.run([venv / "bin/python", "-m", "pip", "install", "-q", "--no-deps", wheel],
                   check=True, capture_output=True, timeout=300)
    shutil.copy2(CENTRAL, root / "etc/systemd/system/streetnode-central.service")
    lib = Path("/usr/lib/systemd/system")
    if not lib.is_dir():
        lib = Path("/lib/systemd/system")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(lib, root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(exist_ok=True)
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")
    return root


def test_verify_is_clean_for_both_units(verify_root):
    r = _analyze("verify", f"--root={verify_root}", "streetnode.service", "streetnode-central.service")
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_verify_catches_a_missing_executable(verify_root, tmp_path):
    broken = tmp_path / "root"
    shutil.copytree(verify_root, broken, symlinks=True)
    (broken / "opt/streetnode/venv/bin/streetnode").unlink()
    r = _analyze("verify", f"--root={broken}", "streetnode.service")
    assert r.returncode != 0
    assert "/opt/streetnode/venv/bin/streetnode is not executable" in r.stderr


@pytest.mark.parametrize("unit", [NODE, CENTRAL], ids=lambda p: p.name)
def test_security_exposure_at_most_2(unit):
    r = _analyze("security", "--offline=yes", "--threshold=20", unit)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    assert float(m.group(1)) <= 2.0
    assert r.returncode == 0, r.stderr


def test_security_threshold_fails_an_unhardened_unit(tmp_path):
    plain = tmp_path / "streetnode.service"
    text = NODE.read_text().split("# --- hardening")[0] + "\n[Install]\nWantedBy=multi-user.target\n"
    plain.write_text(text)
    r = _analyze("security", "--offline=yes", "--threshold=20", plain)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m and float(m.group(1)) > 2.0
    assert r.returncode != 0
