"""A fake Pi under a system root, configs on tmp_path, and the CLI as a real subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from node import config
from node.diag.context import DiagContext
from tests.conftest import PYTHON, ROOT

THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
THERMAL = "sys/class/thermal/thermal_zone0/temp"
TIMESYNC = "run/systemd/timesync/synchronized"


def make_sysroot(root: Path) -> Path:
    """A healthy Pi: I2C bus 1 node, no throttling, 48 °C, clock synchronized."""
    (root / "dev").mkdir(parents=True, exist_ok=True)
    dev = root / "dev" / "i2c-1"
    dev.touch()
    dev.chmod(0o660)
    for rel, text in [(THROTTLED, "0x0\n"), (THERMAL, "48312\n"), (TIMESYNC, "")]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    return make_sysroot(tmp_path / "sysroot")


def config_text(state_dir: Path, *, central: str = "", extra: str = "", weather_address: str = "0x76") -> str:
    return f"""
[node]
id = "hn-test-0001"
state_dir = "{state_dir}"

{central}

[[sensors]]
type = "bme280"
name = "weather"
bus = 1
address = {weather_address}

[[sensors]]
type = "pm25"
name = "air"

[[sensors]]
type = "flood"
name = "flood"
trigger_pin = 23
echo_pin = 24
mount_height_cm = 300

[[sensors]]
type = "rain"
name = "rain"
pin = 17

[status_led]
pin = 27

[buffer]
max_size = "1MiB"

[emulation]
scenario = "calm"
speed = 1.0
{extra}
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def config_file(tmp_path: Path, state_dir: Path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(config_text(state_dir))
    return p


def context(config_file: Path, sysroot: Path, **kw: object) -> DiagContext:
    cfg = config.load(config_file)
    return DiagContext(cfg, config_path=str(config_file), sysroot=sysroot, **kw)  # type: ignore[arg-type]


def by_id(results: list, cid: str):
    found = [r for r in results if r.id == cid]
    assert found, f"no result {cid!r} in {[r.id for r in results]}"
    return found[0]


def run_cli(args: list[str], env: dict[str, str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "node", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def diag_json(args: list[str], env: dict[str, str]) -> tuple[int, dict]:
    p = run_cli(["diag", "--json", *args], env)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout)


@pytest.fixture
def diag_env(cli_env: dict[str, str], sysroot: Path) -> dict[str, str]:
    env = dict(cli_env)
    env["STREETNODE_SYSROOT"] = str(sysroot)
    env.pop("NO_COLOR", None)
    env.pop("STREETNODE_FAULTS", None)
    return env


