"""Which language, and numbers and times as its reader expects them; JSON never changes."""

from __future__ import annotations

import json
import subprocess

import pytest

from node import i18n
from node.cli import lang_from_argv
from tests.conftest import PYTHON, ROOT


@pytest.mark.parametrize(("env", "lang"), [
    ({}, "en"),
    ({"LANG": "vi_VN.UTF-8"}, "vi"),
    ({"LANG": "vi_VN"}, "vi"),
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "vi_VN.UTF-8"}, "vi"),
    ({"LANG": "vi_VN.UTF-8", "LC_ALL": "C"}, "en"),  # LC_ALL wins over LANG
    ({"LANG": "en_GB.UTF-8", "LANGUAGE": "vi:en"}, "vi"),  # LANGUAGE: the preference list
    ({"LANG": "C.UTF-8", "LANGUAGE": "vi"}, "en"),  # ... ignored under the C locale (GNU gettext)
    ({"LANGUAGE": "vi"}, "en"),  # no locale at all is C
    ({"LANG": "vi_VN.UTF-8", "LANGUAGE": "fr:de"}, "vi"),  # no catalogue for fr, de: the locale's
    ({"LANG": "fr_FR.UTF-8"}, "en"),  # the fallback
])
def test_language_from_the_environment_as_gnu_gettext_reads_it(env, lang):
    assert i18n.detect(env) == lang


def test_lang_option_wins_and_is_found_anywhere_on_the_line():
    assert lang_from_argv(["diag", "--lang", "vi"]) == "vi"
    assert lang_from_argv(["--lang=vi", "status"]) == "vi"
    assert lang_from_argv(["read", "--", "--lang", "vi"]) is None
    assert i18n.set_language("vi_VN.UTF-8") == "vi"
    assert i18n.set_language("xx") == "en"


def test_numbers_in_the_readers_notation():
    i18n.set_language("vi")
    assert i18n.number(1234.56, 1) == "1.234,6"
    assert i18n.number(-0.25, 2, sign=True) == "-0,25"
    assert i18n.integer(12345) == "12.345"
    i18n.set_language("en")
    assert i18n.number(1234.56, 1) == "1234.6" and i18n.integer(12345) == "12345"  # as before


def test_times_day_month_year_24h_in_the_nodes_zone():
    wall = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
    assert i18n.date_time(wall) == "2026-05-28 20:26:40 UTC"  # English: as before
    i18n.set_language("vi")
    assert i18n.date_time(wall) == "29/05/2026 03:26:40 (+07)"  # Asia/Ho_Chi_Minh by default
    assert i18n.clock_time(wall) == "03:26:40"
    i18n.set_timezone("UTC")
    assert i18n.date_time(wall) == "28/05/2026 20:26:40 (+00)"


def test_a_zone_without_the_tz_database_falls_back_to_its_fixed_offset(monkeypatch):
    import zoneinfo

    def missing(name):
        raise zoneinfo.ZoneInfoNotFoundError(name)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    assert i18n.zone("Asia/Ho_Chi_Minh").utcoffset(None).total_seconds() == 7 * 3600
    with pytest.raises(ValueError):
        i18n.zone("Mars/Olympus_Mons")


def test_a_bad_timezone_is_a_config_error_naming_the_key(tmp_path):
    from node import config
    from node.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        config.validate({"node": {"id": "n1", "timezone": "Mars/Olympus_Mons"}})
    assert e.value.problems == ['node.timezone: expected a time zone name such as "Asia/Ho_Chi_Minh", '
                                "got 'Mars/Olympus_Mons'"]


def _run(args, env):
    return subprocess.run([PYTHON, "-m", "node", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def _strip_volatile(doc):
    doc["node"].pop("time")
    doc["summary"].pop("duration_s")
    for c in doc["checks"]:
        if c["id"] in ("disk", "clock"):  # free space and the time move between two runs
            c["summary"] = c["detail"] = ""
    return doc


def test_diag_json_is_the_same_document_in_every_language(cli_env):
    env = {k: v for k, v in cli_env.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    args = ["diag", "--json", "--emulate", "storm", "--fault", "weather:absent"]
    english = _run(args, {**env, "LANG": "C.UTF-8"})
    vietnamese = _run(args, {**env, "LANG": "vi_VN.UTF-8"})
    assert english.returncode == vietnamese.returncode == 2
    en_doc, vi_doc = json.loads(english.stdout), json.loads(vietnamese.stdout)
    assert _strip_volatile(vi_doc) == _strip_volatile(en_doc)
    scan = {c["id"]: c for c in en_doc["checks"]}["i2c.scan.bus1"]
    assert scan["summary"] == "weather (bme280): nothing answers at 0x76"


def test_status_json_is_the_same_in_every_language(cli_env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[node]\nid = "n1"\nstate_dir = "{tmp_path / "state"}"\n')
    env = {k: v for k, v in cli_env.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    english = _run(["status", "--json", "-c", str(cfg)], {**env, "LANG": "C.UTF-8"})
    vietnamese = _run(["status", "--json", "-c", str(cfg)], {**env, "LANG": "vi_VN.UTF-8"})
    en_doc, vi_doc = json.loads(english.stdout), json.loads(vietnamese.stdout)
    for doc in (en_doc, vi_doc):
        doc["daemon"].pop("state_age_s")
        doc["clock"].pop("synced_now")
    assert vi_doc == en_doc and en_doc["backlog"]["note"] == "no buffer yet"
    text = _run(["status", "-c", str(cfg)], {**env, "LANG": "vi_VN.UTF-8"}).stdout
    assert "trạm n1: tiến trình nền đã dừng, trạng thái tắt" in text
    assert "tồn đọng: 0 số đo, 0 byte" in text


def test_the_daemon_logs_in_english_under_a_vietnamese_locale(cli_env, tmp_path):
    env = {**cli_env, "LANG": "vi_VN.UTF-8"}
    p = _run(["run", "-c", str(tmp_path / "missing.toml")], env)
    assert p.returncode == 78
    assert "configuration file not found" in p.stderr and "không tìm thấy" not in p.stderr


def test_the_lang_option_switches_a_command(cli_env, tmp_path):
    p = _run(["--lang", "vi", "config", "check", str(tmp_path / "missing.toml")], cli_env)
    assert p.returncode == 78
    assert "không tìm thấy tệp cấu hình" in p.stderr
