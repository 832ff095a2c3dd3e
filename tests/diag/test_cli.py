"""The commands as a technician runs them: real subprocesses, real terminals (pty), JSON shape."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import tarfile

from tests.conftest import PYTHON, ROOT
from tests.diag.conftest import config_text, diag_json, run_cli

CHECK_KEYS = ["id", "status", "summary", "detail", "remedy"]


def test_json_document_shape_is_pinned(config_file, diag_env):
    code, doc = diag_json(["--config", str(config_file)], diag_env)
    assert list(doc) == ["version", "node", "checks", "summary"]
    assert doc["version"] == 1
    assert set(doc["node"]) == {"id", "config", "hostname", "streetnode", "emulated", "time"}
    assert doc["node"]["id"] == "hn-test-0001"
    assert doc["checks"], doc
    for c in doc["checks"]:
        assert list(c) == CHECK_KEYS
        assert c["status"] in ("PASS", "WARN", "FAIL", "SKIP")
        assert all(isinstance(c[k], str) for k in CHECK_KEYS)
    s = doc["summary"]
    assert set(s) == {"pass", "warn", "fail", "skip", "status", "exit_code", "duration_s"}
    assert s["pass"] + s["warn"] + s["fail"] + s["skip"] == len(doc["checks"])
    assert s["exit_code"] == code
    ids = [c["id"] for c in doc["checks"]]
    assert ids[0] == "config" and "clock" in ids and "disk" in ids and "power" in ids
    assert len(ids) == len(set(ids))


def test_invalid_config_is_a_failed_check_not_a_crash(tmp_path, diag_env):
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nid = "n1"\nstate_dr = "/x"\n')
    code, doc = diag_json(["--config", str(bad)], diag_env)
    assert code == 2
    cfg = doc["checks"][0]
    assert cfg["id"] == "config" and cfg["status"] == "FAIL"
    assert "node.state_dr: unknown key; did you mean 'state_dir'?" in cfg["summary"]
    assert "streetnode config check" in cfg["remedy"]
    by = {c["id"]: c for c in doc["checks"]}
    assert by["power"]["status"] == "PASS"  # the rest of the node is still checked


def test_exit_code_follows_the_worst_check(config_file, diag_env, sysroot):
    (sysroot / "run/systemd/timesync/synchronized").unlink()  # clock unsynced: WARN
    code, doc = diag_json(["--config", str(config_file)], diag_env)
    by = {c["id"]: c for c in doc["checks"]}
    assert by["clock"]["status"] == "WARN"
    assert code == (2 if doc["summary"]["fail"] else 1)
    (sysroot / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("0x50005")
    code, doc = diag_json(["--config", str(config_file)], diag_env)
    assert code == 2 and {c["id"]: c for c in doc["checks"]}["power"]["status"] == "FAIL"


def _run_in_pty(args, env):
    master, slave = pty.openpty()
    p = subprocess.Popen([PYTHON, "-m", "node", *args], env=env, cwd=ROOT, stdout=slave,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=30)
    os.close(master)
    return p.returncode, out.decode()


def test_colour_on_a_terminal_and_none_when_piped_or_no_color(config_file, diag_env, sysroot):
    (sysroot / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("0x50005")
    args = ["diag", "--config", str(config_file)]
    code, tty_out = _run_in_pty(args, diag_env)
    assert code == 2
    assert "\x1b[31;1mFAIL\x1b[0m" in tty_out and "\x1b[32mPASS\x1b[0m" in tty_out
    piped = run_cli(args, diag_env)
    assert piped.returncode == 2 and "\x1b[" not in piped.stdout
    assert "FAIL  power" in piped.stdout
    assert "→ use a 5.1 V / 3 A supply" in piped.stdout
    code, no_colour = _run_in_pty(args, {**diag_env, "NO_COLOR": "1"})
    assert "\x1b[" not in no_colour and "FAIL  power" in no_colour


def test_fault_without_emulation_is_a_usage_error(config_file, diag_env):
    p = run_cli(["diag", "--config", str(config_file), "--fault", "weather:absent"], diag_env)
    assert p.returncode == 2
    assert "--fault needs emulated hardware" in p.stderr and "Traceback" not in p.stderr


def test_bundle_holds_the_report_and_never_a_secret(tmp_path, state_dir, diag_env):
    key_hex = "5eC7e7" * 10 + "abcd"
    key = tmp_path / "node.key"
    key.write_text(key_hex + "\n")
    key.chmod(0o600)
    central = (f'[central]\nurl = "http://tech:S3cretPassw0rd@127.0.0.1:9/base?token=T0kenValue"\n'
               f'key_file = "{key}"\n')
    cfg = tmp_path / "secret.toml"
    cfg.write_text(config_text(state_dir, central=central))
    out = tmp_path / "support.tar.gz"
    p = run_cli(["bundle", str(out), "--config", str(cfg)], diag_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(out)
    with tarfile.open(out) as tar:
        names = {m.name.split("/", 1)[1]: m for m in tar.getmembers()}
        assert set(names) == {"diag.json", "journal.txt", "buffer.json", "versions.json", "config.toml"}
        texts = {n: tar.extractfile(m).read().decode() for n, m in names.items()}
    everything = "\n".join(texts.values())
    for secret in ("S3cretPassw0rd", "T0kenValue", key_hex, key_hex.lower(), key_hex.upper()):
        assert secret not in everything
    doc = json.loads(texts["diag.json"])
    assert doc["version"] == 1 and doc["node"]["id"] == "hn-test-0001"
    assert {c["id"]: c for c in doc["checks"]}["central.tcp"]["status"] == "FAIL"
    assert 'url = "http://***@127.0.0.1:9/base?***"' in texts["config.toml"]
    versions = json.loads(texts["versions.json"])
    assert versions["packages"]["gpiozero"] and versions["python"]


def test_emulation_from_the_config_and_faults_from_the_environment(tmp_path, state_dir, diag_env):
    cfg = tmp_path / "emu.toml"
    cfg.write_text(config_text(state_dir, extra="enabled = true"))
    env = {**diag_env, "STREETNODE_FAULTS": "air:nack"}
    code, doc = diag_json(["--config", str(cfg)], env)
    assert doc["node"]["emulated"] == "calm"
    by = {c["id"]: c for c in doc["checks"]}
    assert by["sensor.weather"]["status"] == "PASS"
    assert by["sensor.air"]["status"] == "FAIL" and code == 2


def test_hidden_root_option_is_the_same_as_the_environment(config_file, cli_env, sysroot):
    (sysroot / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("0x10000")
    env = {k: v for k, v in cli_env.items() if k != "STREETNODE_SYSROOT"}
    code, doc = diag_json(["--config", str(config_file), "--emulate", "--root", str(sysroot)], env)
    power = {c["id"]: c for c in doc["checks"]}["power"]
    assert power["status"] == "WARN" and "under-voltage occurred since boot" in power["summary"]
    assert "--root" not in run_cli(["diag", "--help"], env).stdout  # hidden: a test and training hook
