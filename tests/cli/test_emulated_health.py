"""Issue #10: `read --emulate` emulates the Pi's own health (a laptop has no thermal zone, no firmware)."""

from __future__ import annotations

import subprocess

from drivers.emulator import EmulatedRig
from drivers.emulator.health import ENCLOSURE_HEAT_C, EmulatedHealth
from node.sampler import REGISTRY, EmulatedHardware
from tests.conftest import PYTHON


def test_emulated_hardware_builds_an_emulated_health_sensor():
    rig = EmulatedRig("calm")
    try:
        health = REGISTRY["health"]({"name": "node"}, EmulatedHardware(rig))
        assert isinstance(health, EmulatedHealth)
        m = health.read()
        assert m["cpu_temp_c"] == round(rig.truth().temperature_c + ENCLOSURE_HEAT_C, 1)
        assert m["throttled"] == 0
        assert not any(m.flags.values()), m.flags
    finally:
        rig.close()


def test_read_emulate_exits_0_with_every_health_value(tmp_path, cli_env):
    cli_env["XDG_STATE_HOME"] = str(tmp_path)
    r = subprocess.run([PYTHON, "-m", "node.cli", "read", "--emulate", "node"], env=cli_env,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split()[1]: line.split() for line in r.stdout.splitlines() if line.startswith("node ")}
    assert set(rows) == {"cpu_temp_c", "disk_used_pct", "load_1m", "uptime_s", "throttled"}
    assert all(row[-1] == "ok" for row in rows.values()), r.stdout
