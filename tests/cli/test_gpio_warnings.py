"""Issue #10: without a GPIO library gpiozero warned 4 lines per device (48 of the first 67 journal
lines); now one log line with the real cause, and `identify` names it instead of blaming the service."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import EXAMPLE_CONFIG, PYTHON

pytestmark = pytest.mark.skipif(
    subprocess.run([PYTHON, "-c", "import lgpio"], capture_output=True).returncode == 0,
    reason="lgpio is importable here, so gpiozero does not fall back")


def real_config(tmp_path):
    text = EXAMPLE_CONFIG.read_text().replace('state_dir = "/var/lib/streetnode"',
                                              f'state_dir = "{tmp_path / "state"}"')
    text = text.replace('url = "https://central.example.org"', "")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def env_without_pin_factory(cli_env):
    cli_env.pop("GPIOZERO_PIN_FACTORY", None)
    cli_env["JOURNAL_STREAM"] = "8:1"  # log as under systemd
    return cli_env


def test_daemon_logs_one_line_with_the_cause(tmp_path, cli_env):
    proc = subprocess.Popen([PYTHON, "-m", "node.cli", "run", "--config", str(real_config(tmp_path))],
                            env=env_without_pin_factory(cli_env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(6)  # first sampling cycle and sensor retries
    proc.terminate()
    out = proc.communicate(timeout=30)[0]
    assert "PinFactoryFallback" not in out and "warnings.warn" not in out, out
    gpio = [line for line in out.splitlines() if "streetnode.gpio" in line]
    assert len(gpio) == 1, out
    assert "No module named 'lgpio'" in gpio[0] and "python3-lgpio" in gpio[0]


def test_identify_names_the_cause(tmp_path, cli_env):
    r = subprocess.run([PYTHON, "-m", "node.cli", "identify", "--seconds", "1", "--config",
                        str(real_config(tmp_path))], env=env_without_pin_factory(cli_env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 69
    assert r.stderr.count("\n") == 1, r.stderr
    assert "no GPIO here" in r.stderr and "No module named 'lgpio'" in r.stderr
    assert "systemctl stop" not in r.stderr and "PinFactoryFallback" not in r.stderr
