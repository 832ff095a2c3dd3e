"""#20: install.sh names a buffer made on another machine (a copied card) and changes nothing.

The staged root stands for the Pi: its /etc/machine-id and /proc/cpuinfo are files under it."""

from __future__ import annotations

import time

from node.buffer import SqliteBuffer
from node.identity import MachineIdentity, app_machine_id, write_key_record
from node.model import Sample, Stamp
from tests.deploy.conftest import base_args, run_install

WARNING = "this card was copied from another machine"


def pi(root, machine_id: str, serial: str) -> None:
    (root / "etc/machine-id").write_text(machine_id + "\n")
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text(f"Hardware\t: BCM2835\nSerial\t\t: {serial}\n")


def buffer_made_on(root, machine_id: str, serial: str) -> bytes:
    path = root / "var/lib/streetnode/buffer.db"
    buf = SqliteBuffer(path, "hn-test-0007",
                       made_on={"machine_id": app_machine_id(machine_id), "hw_serial": serial})
    buf.put([Sample("weather.temperature_c", 21.5)], Stamp(int(time.time() * 1000), 1, "boot", True))
    buf.close()
    return path.read_bytes()


def test_install_warns_about_a_buffer_made_on_another_machine(installed, wheel):
    pi(installed, "b" * 32, "10000000bbbbbbbb")
    before = buffer_made_on(installed, "a" * 32, "10000000aaaaaaaa")
    r = run_install(*base_args(installed, wheel))
    assert r.rc == 0, r.err
    assert WARNING in r.err and "sudo streetnode provision" in r.err
    assert "the buffer was made on another machine (hw_serial, machine_id differs)" in r.err
    assert r.changes == []  # named, never changed: an image may be copied on purpose
    assert (installed / "var/lib/streetnode/buffer.db").read_bytes() == before


def test_install_is_quiet_about_a_buffer_made_here(installed, wheel):
    pi(installed, "b" * 32, "10000000bbbbbbbb")
    buffer_made_on(installed, "b" * 32, "10000000bbbbbbbb")
    r = run_install(*base_args(installed, wheel))
    assert r.rc == 0, r.err
    assert WARNING not in r.err and r.changes == []


def test_install_warns_in_vietnamese(installed, wheel):
    pi(installed, "b" * 32, "10000000bbbbbbbb")
    buffer_made_on(installed, "a" * 32, "10000000aaaaaaaa")
    r = run_install(*base_args(installed, wheel), env={"LANG": "vi_VN.UTF-8", "LANGUAGE": "vi"})
    assert r.rc == 0, r.err
    assert "thẻ này được sao chép từ máy khác" in r.err and "bộ đệm được tạo trên máy khác" in r.err


def test_install_warns_about_a_key_first_used_on_another_machine(installed, wheel):
    pi(installed, "b" * 32, "10000000bbbbbbbb")
    key = bytes.fromhex((installed / "etc/streetnode/node.key").read_text().strip())
    write_key_record(installed / "var/lib/streetnode", key, MachineIdentity("10000000aaaaaaaa", None))
    r = run_install(*base_args(installed, wheel))
    assert r.rc == 0, r.err
    assert "the node key was recorded on another machine (hw_serial differs)" in r.err and WARNING in r.err
    assert r.changes == []
