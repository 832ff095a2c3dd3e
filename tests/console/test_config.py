"""The ``[console]`` table of the central's config file, and the console's pure rules."""

from __future__ import annotations

import pytest

from central.console.config import ConsoleConfig, parse_console
from central.console.status import band_of, node_state, pm25_band
from node.errors import ConfigError
from tests.central.test_cli import run


def test_defaults_and_a_full_table():
    assert parse_console({}) == ConsoleConfig()
    assert ConsoleConfig().timezone == "Asia/Ho_Chi_Minh" and ConsoleConfig().flood_bands_cm == (10, 20, 30)
    config = parse_console({"console": {"timezone": "UTC", "late_after_s": 60, "silent_after_s": 600,
                                        "buffering_age_s": 90, "flood_bands_cm": [5, 15], "poll_s": 2,
                                        "tile_url": "https://tiles.example/{z}/{x}/{y}.png",
                                        "language": "vi"}})
    assert (config.timezone, config.flood_bands_cm, config.poll_s, config.language) == (
        "UTC", (5.0, 15.0), 2.0, "vi")


@pytest.mark.parametrize(("table", "key"), [
    ({"timezone": "Mars/Olympus"}, "console.timezone"),
    ({"late_after_s": "2m"}, "console.late_after_s"),
    ({"late_after_s": 600, "silent_after_s": 300}, "console.silent_after_s"),
    ({"flood_bands_cm": [30, 20]}, "console.flood_bands_cm"),
    ({"poll_s": 0}, "console.poll_s"),
    ({"language": "fr"}, "console.language"),
    ({"tile_url": "ftp://x"}, "console.tile_url"),
    ({"colour": "red"}, "console.colour"),
])
def test_a_mistake_is_one_line_naming_the_key(table, key):
    with pytest.raises(ConfigError) as caught:
        parse_console({"console": table})
    assert key in str(caught.value) and "\n" not in str(caught.value)


def test_serve_refuses_a_bad_console_table_with_exit_78(tmp_path, cli_env):
    config = tmp_path / "central.toml"
    config.write_text('[console]\ntimezone = "Nowhere/Else"\n')
    r = run(["serve", "--listen", "127.0.0.1:0", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--config",
             str(config)], cli_env)
    assert r.returncode == 78 and "console.timezone" in r.stderr and "Traceback" not in r.stderr


def test_states_follow_the_thresholds():
    config = ConsoleConfig(late_after_s=120, silent_after_s=900, buffering_age_s=120)
    now = 1_000_000_000
    assert node_state(now, None, None, config) == "silent"
    assert node_state(now, now - 5_000, {"oldest_reading_age_s": 30}, config) == "live"
    assert node_state(now, now - 5_000, {"oldest_reading_age_s": 600}, config) == "buffering"
    assert node_state(now, now - 200_000, {"oldest_reading_age_s": 600}, config) == "late"
    assert node_state(now, now - 900_000, {}, config) == "silent"


def test_pm25_bands_at_the_vn_aqi_breakpoints():
    assert [pm25_band(v) for v in (0, 25, 25.1, 50, 50.1, 80, 80.1, 150, 150.1, 250, 250.1, 600)] == [
        "good", "good", "moderate", "moderate", "poor", "poor", "bad", "bad", "very_bad", "very_bad",
        "hazardous", "hazardous"]
    config = ConsoleConfig()
    assert [band_of("flood.depth_cm", v, config)["level"] for v in (0, 9.9, 10, 20, 35)] == [0, 0, 1, 2, 3]
    assert band_of("weather.temperature_c", 40, config) is None
    assert band_of("flood.depth_cm", None, config) is None
