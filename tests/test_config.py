from __future__ import annotations

import subprocess
import tomllib

import pytest

from node import config
from node.errors import ConfigError
from node.units import format_duration, format_size, parse_duration, parse_size
from tests.conftest import EXAMPLE_CONFIG, PYTHON


def minimal(**extra: object) -> dict:
    raw: dict = {"node": {"id": "n1"}}
    raw.update(extra)
    return raw


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("10s", 10), ("5m", 300), ("2h", 7200), ("7d", 604800), ("1.5h", 5400), (30, 30),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10", "ten s", "5 minutes", "-1s", "", True, -3])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(("text", "n"), [("256MiB", 256 * 1024**2), ("1GiB", 1024**3), ("1GB", 10**9),
                                          ("512KiB", 512 * 1024), ("100B", 100), (4096, 4096)])
def test_parse_size(text, n):
    assert parse_size(text) == n


def test_format_round_trips():
    for s in ["250ms", "10s", "5m", "2h", "7d"]:
        assert format_duration(parse_duration(s)) == s
    for s in ["256MiB", "1GiB", "512KiB", "100B"]:
        assert format_size(parse_size(s)) == s


def test_example_config_is_valid_and_complete():
    cfg = config.load(EXAMPLE_CONFIG)
    types = {s["type"] for s in cfg.sensors}
    assert {"bme280", "pm25", "flood", "rain"} <= types
    assert cfg.status_led["pin"] is not None
    assert cfg.sensor("weather")["address"] == 0x76
    assert cfg.upload["interval"] == 600.0  # lazy in calm weather (#22); storm mode uploads every 10 s
    assert cfg.storm["upload_interval"] == 10.0
    assert cfg.buffer["max_size"] == 1024**3


def test_defaults_filled():
    cfg = config.validate(minimal(sensors=[{"type": "bme280", "name": "w"}]))
    assert cfg.node["state_dir"] == "/var/lib/streetnode"
    assert cfg.sensors[0]["address"] == 0x76
    assert cfg.sensors[0]["interval"] == 10.0
    assert cfg.central["url"] is None


def test_address_forms():
    cfg = config.validate(minimal(sensors=[{"type": "bme280", "name": "a", "address": "0x77"},
                                           {"type": "bme280", "name": "b", "address": 118}]))
    assert [s["address"] for s in cfg.sensors] == [0x77, 0x76]


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        config.validate(raw)
    return ei.value.problems


def test_typo_suggests_close_match():
    p = problems_of(minimal(sensors=[{"type": "bme280", "name": "w"},
                                     {"type": "bme280", "name": "x", "bus": 3, "adress": "0x77"}]))
    assert p == ["sensors[1].adress: unknown key; did you mean 'address'?"]


def test_all_problems_at_once():
    p = problems_of({
        "node": {"id": "n 1"},
        "upload": {"interval": "fast"},
        "sensors": [{"type": "bme280", "name": "w"}, {"type": "pm25", "name": "w"},
                    {"type": "flood", "name": "f", "trigger_pin": 40, "echo_pin": 5}],
        "sotrm": {},
    })
    joined = "\n".join(p)
    assert "node.id: expected" in joined
    assert 'upload.interval: expected a duration such as "10s"' in joined
    assert "sensors[1].name: duplicate sensor name 'w' (also sensors[0].name)" in joined
    assert "sensors[2].trigger_pin: expected a BCM GPIO number from 0 to 27, got 40" in joined
    assert "sensors[2].mount_height_cm: missing required key" in joined
    assert "sotrm: unknown section; did you mean 'storm'?" in joined
    assert len(p) == 6


def test_missing_node_id_and_bad_types():
    p = problems_of({"node": {}, "storm": {"enabled": "yes", "rain_rate_mm_h": -1},
                     "sensors": [{"type": "bmp999", "name": "x"}]})
    assert "node.id: missing required key" in p[0]
    assert any(s.startswith("storm.enabled: expected true or false, got 'yes'") for s in p)
    assert any(s.startswith("storm.rain_rate_mm_h: expected a number from 0.1 to 1000") for s in p)
    assert any(s.startswith("sensors[0].type: unknown sensor type 'bmp999'") for s in p)


def test_pin_conflicts():
    p = problems_of(minimal(sensors=[{"type": "rain", "name": "r", "pin": 17}],
                            status_led={"pin": 17}))
    assert p == ["status_led.pin: GPIO 17 is already used by sensors[0].pin"]


def test_effective_config_round_trips_and_hides_secrets():
    raw = tomllib.loads(EXAMPLE_CONFIG.read_text())
    raw["central"]["url"] = "https://user:hunter2@central.example.org/?token=abc"
    cfg = config.validate(raw, source="x")
    text = config.to_toml(cfg)
    assert "hunter2" not in text and "token=abc" not in text
    again = tomllib.loads(text)
    assert again["sensors"][0]["address"] == 0x76
    again["central"]["url"] = "https://central.example.org"
    cfg2 = config.validate(again)
    assert cfg2.sensors == cfg.sensors
    assert cfg2.storm == cfg.storm


def test_resolve_path_order(monkeypatch, tmp_path):
    monkeypatch.delenv("STREETNODE_CONFIG", raising=False)
    assert str(config.resolve_path(None)) == "/etc/streetnode/config.toml"
    monkeypatch.setenv("STREETNODE_CONFIG", str(tmp_path / "a.toml"))
    assert config.resolve_path(None) == tmp_path / "a.toml"
    assert config.resolve_path(tmp_path / "b.toml") == tmp_path / "b.toml"


def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "node", *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_config_check_example(cli_env):
    r = run_cli("config", "check", str(EXAMPLE_CONFIG), env=cli_env)
    assert r.returncode == 0, r.stderr
    assert 'id = "hn-hoankiem-0042"' in r.stdout
    assert "configuration ok (5 sensors)" in r.stderr


def test_cli_config_check_three_problems_exit_78(cli_env, tmp_path):
    text = EXAMPLE_CONFIG.read_text()
    text = text.replace("address = 0x76", "adress = 0x76")
    text = text.replace('interval = "10m"', 'interval = "10 minutes"')
    text = text.replace('name = "air"', 'name = "weather"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    r = run_cli("--config", str(bad), "config", "check", env=cli_env)
    assert r.returncode == 78
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3, r.stderr
    joined = "\n".join(lines)
    assert "sensors[0].adress: unknown key; did you mean 'address'?" in joined
    assert "upload.interval: expected a duration" in joined
    assert "sensors[1].name: duplicate sensor name 'weather'" in joined
    assert "Traceback" not in r.stderr


def test_cli_missing_file_and_bad_toml(cli_env, tmp_path):
    r = run_cli("config", "check", str(tmp_path / "nope.toml"), env=cli_env)
    assert r.returncode == 78 and "configuration file not found" in r.stderr
    (tmp_path / "x.toml").write_text("[node\nid=")
    r = run_cli("config", "check", str(tmp_path / "x.toml"), env=cli_env)
    assert r.returncode == 78 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr


def test_cli_env_var_used(cli_env):
    cli_env["STREETNODE_CONFIG"] = str(EXAMPLE_CONFIG)
    r = run_cli("config", "check", env=cli_env)
    assert r.returncode == 0, r.stderr


def test_cli_help_both_programs(cli_env):
    r = run_cli("--help", env=cli_env)
    assert r.returncode == 0 and "config" in r.stdout and "Exit codes" in r.stdout
    r = subprocess.run([PYTHON, "-m", "central.cli", "--help"], capture_output=True, text=True,
                       env=cli_env, timeout=60)
    assert r.returncode == 0 and "streetnode-central" in r.stdout


# ---------------------------------------------------------------- issue #10: what a new user hit
@pytest.mark.parametrize("command", [["config", "check"], ["run"], ["status"]])
def test_non_utf8_config_is_one_line_with_file_and_offset(tmp_path, cli_env, command):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[node]\nid = "n1"\n[node.location]\nlat = 1.0\nlon = 2.0\nward = "Ph'
                    + b"\xf9\xf4ng\"\n")
    r = subprocess.run([PYTHON, "-m", "node.cli", *command, "--config", str(bad)], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 78, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] and "not UTF-8" in lines[0] and "byte 0xf9 at offset 63 (line 6)" in lines[0]


def test_non_utf8_config_in_diag_is_the_failed_config_check(tmp_path, cli_env):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[node]\nid = "n\xe9"\n')
    r = subprocess.run([PYTHON, "-m", "node.cli", "diag", "--config", str(bad)], env=cli_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr  # diag's own code: a failed check (docs/diag.md)
    assert "internal error" not in r.stderr
    assert "FAIL  config" in r.stdout and "byte 0xe9 at offset 14" in r.stdout


def _problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as e:
        config.validate(raw)
    return e.value.problems


def test_two_i2c_sensors_at_one_address_names_both_keys():
    problems = _problems(minimal(sensors=[{"type": "bme280", "name": "weather", "address": "0x12"},
                                          {"type": "pm25", "name": "air"}]))
    assert problems == ["sensors[1].address: I2C bus 1 address 0x12 is already used by sensors[0].address; "
                        "two parts cannot share an address"]


def test_same_address_on_two_buses_is_fine():
    config.validate(minimal(sensors=[{"type": "pm25", "name": "air"},
                                     {"type": "pm25", "name": "air2", "bus": 3}]))


def test_ranger_range_below_its_mount_height():
    problems = _problems(minimal(sensors=[{"type": "flood", "name": "flood", "trigger_pin": 23,
                                           "echo_pin": 24, "mount_height_cm": 300, "max_distance_cm": 250}]))
    assert problems == ["sensors[0].max_distance_cm: 250 is below sensors[0].mount_height_cm (300): "
                        "the ranger could never see the dry road"]


def test_min_distance_cm_is_supported_and_checked():
    ranger = {"type": "flood", "name": "flood", "trigger_pin": 23, "echo_pin": 24, "mount_height_cm": 300}
    cfg = config.validate(minimal(sensors=[{**ranger, "min_distance_cm": 20}]))
    assert cfg.sensors[0]["min_distance_cm"] == 20.0
    assert "min_distance_cm = 20.0" in config.to_toml(cfg)
    assert config.validate(minimal(sensors=[ranger])).sensors[0]["min_distance_cm"] == 2.0
    problems = _problems(minimal(sensors=[{**ranger, "min_distance_cm": 99, "mount_height_cm": 80,
                                           "max_distance_cm": 90}]))
    assert problems == ["sensors[0].min_distance_cm: 99 is not below sensors[0].max_distance_cm (90)"]


def test_min_distance_reaches_the_driver():
    from node.sampler import REGISTRY

    class Hw:
        pin_factory = None

    cfg = config.validate(minimal(sensors=[{"type": "flood", "name": "flood", "trigger_pin": 23,
                                            "echo_pin": 24, "mount_height_cm": 300, "min_distance_cm": 25}]))
    assert REGISTRY["flood"](cfg.sensors[0], Hw()).min_distance_cm == 25.0


@pytest.mark.parametrize(("sensor", "key"), [({"type": "rain", "name": "rain", "pin": 2}, "pin"),
                                             ({"type": "flood", "name": "flood", "trigger_pin": 3,
                                               "echo_pin": 24, "mount_height_cm": 300}, "trigger_pin")])
def test_gpio_sensor_on_the_i2c_pins_names_both_keys(sensor, key):
    problems = _problems(minimal(sensors=[{"type": "bme280", "name": "weather"}, sensor]))
    pin = sensor[key]
    assert problems == [f"sensors[1].{key}: GPIO {pin} is {'SDA' if pin == 2 else 'SCL'} of the I2C bus of "
                        "sensors[0].bus (fixed pull-up on the Pi); use another GPIO"]


def test_status_led_on_an_i2c_pin():
    problems = _problems(minimal(status_led={"pin": 3}))
    assert problems == ["status_led.pin: GPIO 3 is SCL of I2C bus 1, the sensors' bus (fixed pull-up on the "
                        "Pi); use another GPIO"]
