"""The node's side of fleet configuration (node/fleet.py, node/remote_keys.py): what it accepts,
its state file step by step, the health check's verdicts."""

from __future__ import annotations

import json

import pytest

from node import config
from node.errors import ConfigError
from node.fleet import STATE_FILE, Fleet, HealthCheck, Version, build_config, read_report
from node.remote_keys import check_layer, layer_hash

LOCAL = {"node": {"id": "pole-1"}, "central": {"url": "http://127.0.0.1:8080"},
         "upload": {"interval": "30s"},
         "sensors": [{"type": "bme280", "name": "weather"}, {"type": "pm25", "name": "air"}]}


def version(text: str, label: str = "g1", layer_id: int = 1) -> Version:
    import tomllib

    return Version(label, layer_hash(tomllib.loads(text)),
                   ({"id": layer_id, "scope": "group", "target": "w", "toml": text},))


def test_the_central_sets_only_its_keys_over_the_poles_file():
    cfg = build_config(LOCAL, "/etc/x.toml", version('[upload]\ninterval = "10s"\n[[sensors]]\n'
                                                     'name = "air"\ninterval = "1m"\n'))
    assert cfg.upload["interval"] == 10.0 and cfg.sensor("air")["interval"] == 60.0
    assert cfg.sensor("weather")["interval"] == 10.0 and cfg.source == "/etc/x.toml + central g1"
    for text, message in [('[node]\nid = "other"\n', "node.id: may not come from the central"),
                          ('[buffer]\nmax_size = "1GiB"\n', "buffer: may not come from the central"),
                          ('[[sensors]]\nname = "air"\naddress = 0x13\n', r"sensors\[0\]\.address: may not"),
                          ('[[sensors]]\nname = "rain"\ninterval = "1s"\n', "this pole has no sensor 'rain'"),
                          ('[central]\nurl = "http://example.org"\n', "plain http:// is only allowed"),
                          ('[upload]\ninterval = "0s"\n', "upload.interval: expected a duration")]:
        with pytest.raises(ConfigError, match=message):
            build_config(LOCAL, "x", version(text))
    good = version('[upload]\ninterval = "10s"\n')
    with pytest.raises(ConfigError, match="does not match its layers"):
        build_config(LOCAL, "x", Version("g1", "0" * 16, good.layers))


def test_check_layer_words_problems_as_validate_does():
    layer = {"upload": {"intervall": "1s", "live_readings": 0}, "sensorz": {}}
    problems = check_layer(layer)
    with pytest.raises(ConfigError) as local:
        config.validate({"node": {"id": "x"}, **layer})
    assert set(problems) == set(local.value.problems)


def _saved(tmp_path) -> dict:
    return json.loads((tmp_path / STATE_FILE).read_text())


def test_begin_commit_revert_and_the_state_file_at_each_step(tmp_path):
    fleet = Fleet(LOCAL, "x", tmp_path, wall=lambda: 1000.0)
    assert fleet.startup().upload["interval"] == 30.0 and fleet.report()["config_origin"] == "local"
    one, two = version('[upload]\ninterval = "10s"\n', "g1"), version('[upload]\ninterval = "5s"\n', "g2", 2)
    assert fleet.wants({"version": "g1", "hash": one.hash})
    fleet.begin(one)
    assert _saved(tmp_path)["trial"]["version"] == "g1" and _saved(tmp_path)["last_good"] is None
    assert not fleet.wants({"version": "g2", "hash": two.hash})  # not during a health check
    fleet.commit()
    assert _saved(tmp_path)["last_good"]["version"] == "g1" and _saved(tmp_path)["trial"] is None
    fleet.begin(two)
    cfg = fleet.revert("no upload completed")
    assert cfg.upload["interval"] == 10.0 and fleet.current.version == "g1"
    report = fleet.report()
    assert report == {"config_version": "g1", "config_origin": "central", "config_state": "ok",
                      "config_failed_version": "g2", "config_failed_reason": "no upload completed"}
    assert read_report(tmp_path) == report
    assert not fleet.wants({"version": "g2", "hash": two.hash})  # the failed version is not fetched again
    assert fleet.wants({"version": "g3", "hash": "x"})
    again = Fleet(LOCAL, "x", tmp_path)  # a restart reads the same state
    assert again.startup().upload["interval"] == 10.0 and again.report() == report


def test_a_restart_during_the_check_resumes_it_and_the_third_counts_as_failed(tmp_path):
    fleet = Fleet(LOCAL, "x", tmp_path)
    fleet.begin(version('[upload]\ninterval = "10s"\n'))
    for starts in (2, 3):
        fleet = Fleet(LOCAL, "x", tmp_path)
        assert fleet.startup().upload["interval"] == 10.0 and fleet.trial["starts"] == starts
    fleet = Fleet(LOCAL, "x", tmp_path)
    assert fleet.startup().upload["interval"] == 30.0
    assert "restarted 3 times" in fleet.report()["config_failed_reason"] and fleet.current is None


def test_a_version_the_poles_file_no_longer_fits_falls_back(tmp_path):
    fleet = Fleet(LOCAL, "x", tmp_path)
    fleet.begin(version('[[sensors]]\nname = "air"\ninterval = "1m"\n'))
    fleet.commit()
    fewer = {**LOCAL, "sensors": [{"type": "bme280", "name": "weather"}]}
    fleet = Fleet(fewer, "x", tmp_path)
    assert fleet.startup().sensors == config.validate(fewer).sensors
    assert "no longer fits the pole's file" in fleet.report()["config_failed_reason"]


def test_a_damaged_state_file_means_the_file_alone(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    fleet = Fleet(LOCAL, "x", tmp_path)
    assert fleet.startup().upload["interval"] == 30.0 and fleet.current is None


def test_health_check_needs_every_sensor_and_one_upload_with_the_new_settings():
    check = HealthCheck("g2", started=100.0, window_s=10, sensors={"weather", "air"}, generation=3)
    check.upload_round(2, acked_batches=5, error=None)  # a round with the old settings does not count
    assert check.verdict(105, {"weather": 104.0, "air": 104.0}) is False
    check.upload_round(3, acked_batches=0, error="connection refused by 127.0.0.1:9")
    reason = check.verdict(110, {"weather": 104.0, "air": 99.0})
    assert reason == ("no upload completed with the new settings within 10s (last error: connection "
                      "refused by 127.0.0.1:9); sensors not sampled within 10s: air")
    check.upload_round(4, acked_batches=1, error=None)
    assert check.verdict(106, {"weather": 104.0, "air": 105.0}) is True
    assert check.verdict(106, {"weather": 104.0}) is True  # a sensor the new version disabled


class _Transport:
    """Answers the config fetch as told (the HTTP and receipt checks are node/upload_transport's)."""

    def __init__(self, answer) -> None:
        self.answer, self.posts = answer, []

    def post(self, path, body, *, body_headers=None):
        self.posts.append(path)
        return self.answer


def _agent(tmp_path, answer):
    from types import SimpleNamespace

    from node.agent import Agent

    fleet = Fleet(LOCAL, "x", tmp_path)
    agent = Agent(fleet.startup(), fleet=fleet)
    agent.uploader = SimpleNamespace(transport=_Transport(answer))
    return agent, fleet


def test_only_an_answer_with_our_receipt_is_applied_and_a_bad_one_is_reported(tmp_path):
    from types import SimpleNamespace

    from node.upload_transport import Answer

    good = version('[upload]\ninterval = "10s"\n')
    hint = SimpleNamespace(batches=1, error=None, config={"version": "g1", "hash": good.hash})
    spoofed, fleet = _agent(tmp_path / "a", Answer(200, body=good.as_json(), signed=False))
    spoofed._fleet_after_round(hint)
    assert spoofed.uploader.transport.posts == ["/v1/config"] and spoofed._fleet_pending is None
    assert fleet.report()["config_failed_version"] is None  # nothing believed, nothing recorded

    agent, fleet = _agent(tmp_path / "b", Answer(200, body=good.as_json(), signed=True))
    agent._fleet_after_round(hint)
    assert agent._fleet_pending[0] == good and agent._fleet_pending[1].upload["interval"] == 10.0

    bad = version('[node]\nid = "pole-9"\n')
    agent, fleet = _agent(tmp_path / "c", Answer(200, body=bad.as_json(), signed=True))
    agent._incident = lambda kind, detail: None  # no buffer in this test
    bad_hint = SimpleNamespace(batches=1, error=None, config={"version": "g1", "hash": bad.hash})
    agent._fleet_after_round(bad_hint)
    assert agent._fleet_pending is None
    reason = fleet.report()["config_failed_reason"]
    assert reason.startswith("refused: node.id: may not come from the central")
    assert not fleet.wants({"version": "g1", "hash": bad.hash})


def test_sighup_puts_the_current_version_over_the_edited_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[node]\nid = "pole-1"\n[central]\nurl = "http://127.0.0.1:8080"\n'
                    '[[sensors]]\ntype = "bme280"\nname = "weather"\n')
    raw, source = config.load_raw(path)
    fleet = Fleet(raw, source, tmp_path)
    fleet.begin(version('[upload]\ninterval = "10s"\n'))
    fleet.commit()
    path.write_text(path.read_text() + '[storm]\nrain_rate_mm_h = 9\n')
    cfg = fleet.reload(str(path))
    assert cfg.upload["interval"] == 10.0 and cfg.storm["rain_rate_mm_h"] == 9.0
    path.write_text(path.read_text() + "[upload]\nintervall = 3\n")
    with pytest.raises(ConfigError, match="intervall"):
        fleet.reload(str(path))  # the running configuration stays (node/commands/run.py logs why)
    assert fleet.current.version == "g1" and fleet.local_raw["storm"]["rain_rate_mm_h"] == 9


def test_a_write_cut_short_leaves_the_previous_file_and_no_debris(tmp_path):
    fleet = Fleet(LOCAL, "x", tmp_path)
    fleet.begin(version('[upload]\ninterval = "10s"\n'))
    before = (tmp_path / STATE_FILE).read_text()
    (tmp_path / f".{STATE_FILE}.4242.tmp").write_text('{"current": {"version": "g9"')  # cut mid-write
    again = Fleet(LOCAL, "x", tmp_path)
    assert again.current.version == "g1" and (tmp_path / STATE_FILE).read_text() == before
    assert list(tmp_path.glob(".*.tmp")) == []


def test_the_check_resumes_with_the_sensors_that_sampled_before(tmp_path):
    fleet = Fleet(LOCAL, "x", tmp_path)
    fleet.begin(version('[upload]\ninterval = "10s"\n'), {"weather"})
    again = Fleet(LOCAL, "x", tmp_path)
    again.startup()
    assert again.trial["sensors"] == ["weather"] and again.trial["starts"] == 2
