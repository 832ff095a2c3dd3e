"""scan, read and identify on the emulated rig, as real subprocesses where output matters."""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory

from drivers.led import StatusLED
from node.commands.identify import blink
from tests.diag.conftest import run_cli


def test_scan_draws_the_grid_and_names_configured_sensors(config_file, diag_env):
    p = run_cli(["scan", "--config", str(config_file), "--emulate"], diag_env)
    assert p.returncode == 0, p.stderr
    assert "10: -- -- 12 --" in p.stdout and "70: -- -- -- -- -- -- 76 --" in p.stdout
    assert "0x76  BME280" in p.stdout and "0x12  PMSA003I" in p.stdout
    assert "config: weather (bme280) at 0x76: answers" in p.stdout


def test_scan_marks_a_missing_sensor_and_exits_1(config_file, diag_env):
    p = run_cli(["scan", "--config", str(config_file), "--emulate", "--fault", "weather:absent"], diag_env)
    assert p.returncode == 1
    assert "config: weather (bme280) at 0x76: MISSING" in p.stdout and "0x76  BME280" not in p.stdout


def test_scan_of_a_missing_bus_is_one_line_with_the_remedy(config_file, diag_env, sysroot):
    (sysroot / "dev" / "i2c-1").unlink()
    p = run_cli(["scan", "--config", str(config_file), "--bus", "1"], diag_env)
    assert p.returncode == 69, p.stderr
    assert "does not exist" in p.stderr and "raspi-config nonint do_i2c 0" in p.stderr
    assert "Traceback" not in p.stderr


def test_read_prints_units_and_quality(config_file, diag_env):
    p = run_cli(["read", "--config", str(config_file), "--emulate", "storm"], diag_env)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    temp = next(line for line in lines if "temperature_c" in line)
    assert temp.split()[0] == "weather" and "°C" in temp and temp.rstrip().endswith("ok")
    assert any("pm2_5_ugm3" in line and "µg/m³" in line for line in lines)
    assert any(line.startswith("flood") and "depth_cm" in line and " cm " in line for line in lines)


def test_read_one_sensor_with_watch_and_a_fault(config_file, diag_env):
    p = run_cli(["read", "flood", "--config", str(config_file), "--emulate", "--fault", "flood:dead_echo",
                 "--watch", "--interval", "0.1", "--count", "2"], diag_env)
    assert p.returncode == 1
    assert p.stdout.count("-- ") == 2
    assert all(line.startswith(("flood", "--")) for line in p.stdout.splitlines())
    assert "out_of_range" in p.stdout and "fault" in p.stdout


def test_read_unknown_sensor_is_a_usage_error(config_file, diag_env):
    p = run_cli(["read", "wether", "--config", str(config_file), "--emulate"], diag_env)
    assert p.returncode == 2
    assert "sensor 'wether' is not in" in p.stderr and "weather" in p.stderr


def test_identify_blinks_then_switches_off():
    factory = MockFactory()
    led = StatusLED(27, pin_factory=factory)
    blink(led, 0.4)
    pin = factory.pin(27)
    changes = [s.state for s in pin.states]
    assert changes.count(True) >= 2  # several flashes, not one steady light
    assert pin.state is False or pin.state == 0


def test_identify_command_on_the_rig(config_file, diag_env):
    p = run_cli(["identify", "--seconds", "0.3", "--config", str(config_file), "--emulate"], diag_env)
    assert p.returncode == 0, p.stderr
    assert "blinking the status LED on GPIO27" in p.stderr


def test_identify_without_led_says_so(tmp_path, state_dir, diag_env):
    from tests.diag.conftest import config_text
    cfg = tmp_path / "noled.toml"
    cfg.write_text(config_text(state_dir).replace("[status_led]\npin = 27\n", ""))
    p = run_cli(["identify", "--config", str(cfg), "--emulate"], diag_env)
    assert p.returncode == 2 and "status_led.pin is not set" in p.stderr


ALARM = ('\n[[alarms]]\nname = "flood_light"\npin = 22\nchannel = "flood.depth_cm"\non_at = 20.0\n'
         'off_below = 15.0\n')


def test_identify_alarm_switches_the_emulated_light_on_then_off(tmp_path, state_dir, diag_env):
    from tests.diag.conftest import config_text
    cfg = tmp_path / "alarm.toml"
    cfg.write_text(config_text(state_dir) + ALARM)
    p = run_cli(["identify", "--alarm", "flood_light", "--seconds", "0.3", "--config", str(cfg),
                 "--emulate"], diag_env)
    assert p.returncode == 0, p.stderr
    assert "alarm flood_light (GPIO22) watches flood.depth_cm: on at >= 20 x2, off < 15 for 10m" in p.stderr
    lines = p.stderr.splitlines()
    on = next(i for i, line in enumerate(lines) if "emulated flood_light (GPIO22) ON" in line)
    off = next(i for i, line in enumerate(lines) if "emulated flood_light (GPIO22) OFF" in line)
    assert on < off and "alarm flood_light off" in lines[-1]
    p = run_cli(["identify", "--alarm", "siren", "--config", str(cfg), "--emulate"], diag_env)
    assert p.returncode == 2 and "no [[alarms]] entry named 'siren' (alarms: flood_light)" in p.stderr


def test_diag_shows_the_alarm_and_claims_its_output(tmp_path, state_dir, sysroot):
    from node import config
    from node.diag.alarms import check_alarm
    from node.diag.context import DiagContext
    from tests.diag.conftest import config_text

    path = tmp_path / "alarm.toml"
    path.write_text(config_text(state_dir) + ALARM)
    ctx = DiagContext(config.load(path), config_path=str(path), sysroot=sysroot, emulate="storm")
    result = check_alarm(ctx, "flood_light")
    assert result.status.name == "PASS", result
    assert "flood_light (GPIO22) watches flood.depth_cm" in result.summary
    assert "output usable" in result.summary
