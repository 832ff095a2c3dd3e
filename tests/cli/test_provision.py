"""#20: a card copied to another Pi shows in `provision --check`, `status` and `diag`, and
`streetnode provision` gives it its own buffer and epoch. Two machines are two identity roots
(``STREETNODE_IDENTITY_ROOT``: /etc/machine-id and /proc/cpuinfo under a directory)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from node.buffer import SqliteBuffer
from node.buffer.collision import PROVISION_EPOCH_RANGE
from node.buffer.store import epoch_file_provisioned, read_epoch_file
from node.identity import ROOT_ENV, adopt_key, local_identity, read_key_record
from node.model import Sample, Stamp
from tests.conftest import PYTHON, ROOT

NODE = "hn-test-0001"


def machine(root, machine_id: str, serial: str):
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "machine-id").write_text(machine_id + "\n")
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text(f"Hardware\t: BCM2835\nSerial\t\t: {serial}\n")
    return local_identity({ROOT_ENV: str(root)})


@pytest.fixture
def card(tmp_path):
    """A card set up on machine A: config, key, a buffer with readings, the key's machine record."""
    a = machine(tmp_path / "pi-a", "a" * 32, "10000000aaaaaaaa")
    b = machine(tmp_path / "pi-b", "b" * 32, "10000000bbbbbbbb")
    state = tmp_path / "state"
    key = tmp_path / "node.key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[node]\nid = "{NODE}"\nstate_dir = "{state}"\n'
                   f'[central]\nurl = "http://127.0.0.1:9"\nkey_file = "{key}"\n')
    buf = SqliteBuffer(state / "buffer.db", NODE, made_on=a.as_dict())
    for i in range(3):
        buf.put([Sample("weather.temperature_c", 20.0 + i)], Stamp(int(time.time() * 1000), i, "boot", True))
    buf.close()
    return {"cfg": cfg, "state": state, "key": key, "a": tmp_path / "pi-a", "b": tmp_path / "pi-b",
            "ids": (a, b)}


def cli(card, on: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{ROOT_ENV: str(card[on])})
    env.pop("STREETNODE_CONFIG", None)
    return subprocess.run([PYTHON, "-m", "node", "--config", str(card["cfg"]), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_on_its_own_machine_nothing_is_copied(card):
    r = cli(card, "a", "provision")
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stdout
    r = cli(card, "a", "provision", "--check")
    assert r.returncode == 0 and "belong to this machine" in r.stdout
    assert "warning" not in cli(card, "a", "status").stdout


def test_a_copied_card_is_named_and_provision_gives_it_its_own_buffer_and_epoch(card):
    adopt_key(card["state"], bytes.fromhex("ab" * 32), card["ids"][0])  # what the agent did on A
    assert read_key_record(card["state"])["hw_serial"] == "10000000aaaaaaaa"
    r = cli(card, "b", "provision", "--check")
    assert r.returncode == 1
    assert "the buffer was made on another machine (hw_serial, machine_id differs)" in r.stdout
    assert "the node key was recorded on another machine" in r.stdout
    status = cli(card, "b", "status")
    assert status.returncode == 0 and "warning: the buffer was made on another machine" in status.stdout
    doc = json.loads(cli(card, "b", "status", "--json").stdout)
    assert doc["numbering"]["copied"]["buffer"] == ["hw_serial", "machine_id"]

    r = cli(card, "b", "provision")
    assert r.returncode == 0, r.stderr
    assert "set the copied buffer aside" in r.stdout and "starts its own buffer at epoch" in r.stdout
    aside = list(card["state"].glob("buffer.db.cloned-*"))
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert not (card["state"] / "buffer.db").exists()
    epoch_file = card["state"] / "buffer.db.epoch"
    lo, hi = PROVISION_EPOCH_RANGE
    assert lo - 1 <= read_epoch_file(epoch_file) < hi and epoch_file_provisioned(epoch_file)
    assert cli(card, "b", "provision", "--check").returncode == 0  # the key now names B; no buffer yet
    assert read_key_record(card["state"])["machine_id"] == card["ids"][1].machine_id
    assert not adopt_key(card["state"], bytes.fromhex("ab" * 32), card["ids"][1])  # kept as it is

    # the daemon's next start on B: a fresh buffer at the provisioned epoch, made on B, nothing "lost"
    buf = SqliteBuffer(card["state"] / "buffer.db", NODE, made_on=card["ids"][1].as_dict())
    buf.open()
    assert buf.epoch == read_epoch_file(epoch_file) and lo <= buf.epoch < hi
    assert buf.made_on == {"hw_serial": "10000000bbbbbbbb", "machine_id": card["ids"][1].machine_id}
    assert buf.claim(10, max_records=200) is None  # no buffer_lost incident: provisioned, not lost
    buf.close()
    assert cli(card, "b", "provision", "--check").returncode == 0
    assert "nothing to do" in cli(card, "b", "provision").stdout


def test_provision_refuses_while_the_daemon_runs(card):
    state = card["state"] / "agent-state.json"
    state.write_text(json.dumps({"pid": os.getpid(), "updated_at": time.time()}))
    r = cli(card, "b", "provision")
    assert r.returncode == 69 and "stop it first" in r.stderr and "Traceback" not in r.stderr
    assert (card["state"] / "buffer.db").exists()
    state.write_text(json.dumps({"pid": os.getpid(), "updated_at": time.time() - 3600}))  # long gone
    assert cli(card, "b", "provision").returncode == 0 and not (card["state"] / "buffer.db").exists()


def test_a_fresh_card_gets_a_random_first_epoch(tmp_path):
    machine(tmp_path / "pi-a", "c" * 32, "10000000cccccccc")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[node]\nid = "{NODE}"\nstate_dir = "{tmp_path / "state"}"\n')
    card = {"cfg": cfg, "a": tmp_path / "pi-a"}
    r = cli(card, "a", "provision")
    assert r.returncode == 0, r.stderr
    first = read_epoch_file(tmp_path / "state" / "buffer.db.epoch") + 1
    assert PROVISION_EPOCH_RANGE[0] <= first < PROVISION_EPOCH_RANGE[1]
    again = cli(card, "a", "provision")  # every boot: the epoch file exists now, nothing changes
    assert "nothing to do" in again.stdout
    assert read_epoch_file(tmp_path / "state" / "buffer.db.epoch") + 1 == first


def test_diag_names_a_copied_card_in_the_buffer_check(card):
    from node import config
    from node.diag.context import DiagContext
    from node.diag.storage import check_buffer

    cfg = config.load(card["cfg"])
    on_a = check_buffer(DiagContext(cfg, config_path=str(card["cfg"]), sysroot=card["a"]))
    assert on_a.status.name == "PASS", on_a
    on_b = check_buffer(DiagContext(cfg, config_path=str(card["cfg"]), sysroot=card["b"]))
    assert on_b.status.name == "WARN"
    assert "the buffer was made on another machine (hw_serial, machine_id differs)" in on_b.summary
    assert "sudo streetnode provision" in on_b.remedy
