"""[[forward]] sinks: every mistake is one line naming the key, exit 78 from `serve --config`."""

from __future__ import annotations

import pytest

from central.forward.config import parse_sinks
from node.errors import ConfigError
from tests.central.test_cli import run

BASE = {"name": "tb", "host": "127.0.0.1"}


def test_defaults_and_password_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    raw = {**BASE, "tls": True, "username": "TOKEN", "password_file": str(secret)}
    [sink] = parse_sinks({"forward": [raw]})
    assert (sink.layout, sink.port, sink.password) == ("thingsboard", 8883, "s3cret")
    assert sink.max_message_bytes == 65536
    assert sink.client_id == "streetnode-central-tb" and sink.start == "beginning"
    assert parse_sinks({}) == []


@pytest.mark.parametrize("raw, words", [
    ({**BASE, "hots": "x"}, "forward[0].hots: unknown key"),
    ({**BASE, "layout": "kafka"}, "forward[0].layout: expected one of thingsboard, plain"),
    ({"name": "tb"}, "forward[0].host: required"),
    ({**BASE, "name": "Bad Name"}, "forward[0].name: expected a name"),
    ({**BASE, "port": 0}, "forward[0].port: expected a whole number from 1 to 65535"),
    ({**BASE, "tls": "yes"}, "forward[0].tls: expected true or false"),
    ({**BASE, "cert_file": "/nonexistent.pem"}, "forward[0].cert_file: no such file"),
    ({**BASE, "topic_prefix": "a/#"}, "forward[0].topic_prefix: expected a topic without + or #"),
    ({**BASE, "max_messages_per_s": 0}, "forward[0].max_messages_per_s"),
    ({**BASE, "max_message_bytes": 10}, "forward[0].max_message_bytes"),
    ({**BASE, "start": "yesterday"}, "forward[0].start"),
    ({**BASE, "password": "a", "password_file": "/etc/hostname"}, "give password or password_file"),
])
def test_mistakes_name_the_key(raw, words):
    with pytest.raises(ConfigError) as err:
        parse_sinks({"forward": [raw]})
    assert words in str(err.value)


def test_duplicate_names():
    with pytest.raises(ConfigError, match=r"forward\[1\].name: duplicate sink name 'tb'"):
        parse_sinks({"forward": [BASE, BASE]})


def test_client_certificates_need_tls(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(ConfigError, match="need tls = true"):
        parse_sinks({"forward": [{**BASE, "cert_file": str(cert), "key_file": str(key)}]})
    with pytest.raises(ConfigError, match="together"):
        parse_sinks({"forward": [{**BASE, "tls": True, "cert_file": str(cert)}]})


@pytest.mark.parametrize("text, words", [
    ("[[forward]]\nname = 'tb'\n", "forward[0].host: required"),
    ("[nonsense]\n", "nonsense: unknown section"),
    ("[alerts]\nlate_after = \"soon\"\n", "alerts.late_after: expected a duration"),
    ("forward = [", "not valid TOML"),
])
def test_serve_refuses_a_bad_config_with_exit_78(tmp_path, cli_env, text, words):
    conf = tmp_path / "central.toml"
    conf.write_text(text)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    r = run(["serve", "--listen", "127.0.0.1:0", "--db", db, "--config", str(conf)], cli_env)
    assert r.returncode == 78 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
