"""#20: the machine identity every batch carries, read from files whose paths tests choose."""

from __future__ import annotations

from node.identity import (
    MachineIdentity,
    adopt_key,
    app_machine_id,
    copied_from,
    hw_serial,
    key_fingerprint,
    local_identity,
    machine_identity,
    read_key_record,
)

MACHINE_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
CPUINFO = "processor\t: 0\nmodel name\t: ARMv7\nHardware\t: BCM2835\nSerial\t\t: 00000000ABCDEF12\n"


def test_the_device_tree_serial_wins_and_cpuinfo_is_the_fallback(tmp_path):
    dt, cpu, none = tmp_path / "serial-number", tmp_path / "cpuinfo", tmp_path / "absent"
    dt.write_bytes(b"10000000c0ffee42\x00")
    cpu.write_text(CPUINFO)
    assert hw_serial(dt, cpu) == "10000000c0ffee42"
    assert hw_serial(none, cpu) == "00000000abcdef12"
    assert hw_serial(none, none) is None
    cpu.write_text("Serial\t\t: 0000000000000000\n")  # boards without one report zeros
    assert hw_serial(none, cpu) is None
    cpu.write_text("Serial : 12 34; rm -rf /\n")  # not a serial: never sent
    assert hw_serial(none, cpu) is None


def test_the_machine_id_is_sent_only_in_its_app_specific_form(tmp_path):
    mid = tmp_path / "machine-id"
    mid.write_text(MACHINE_ID + "\n")
    ident = machine_identity(device_tree=tmp_path / "x", cpuinfo=tmp_path / "y", machine_id=mid)
    assert ident.hw_serial is None and ident.machine_id == app_machine_id(MACHINE_ID)
    assert len(ident.machine_id) == 32 and MACHINE_ID not in ident.machine_id
    assert app_machine_id("1" * 32) != ident.machine_id  # another machine, another id
    mid.write_text("uninitialized\n")  # first boot not finished
    again = machine_identity(device_tree=tmp_path / "x", cpuinfo=tmp_path / "y", machine_id=mid)
    assert again.machine_id is None


def test_copied_from_names_what_differs_and_ignores_the_unknown():
    here = MachineIdentity("aa11", "m" * 32)
    assert copied_from({"hw_serial": "aa11", "machine_id": "m" * 32}, here) == []
    assert copied_from({"hw_serial": "bb22"}, here) == ["hw_serial"]
    assert copied_from({"hw_serial": "bb22", "machine_id": "n" * 32}, here) == ["hw_serial", "machine_id"]
    assert copied_from({}, here) == []
    assert copied_from({"hw_serial": "bb22"}, MachineIdentity(None, None)) == []


def test_an_identity_root_puts_every_file_under_it(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text(MACHINE_ID)
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "serial-number").write_bytes(b"10000000feedbeef\x00")
    ident = local_identity({"STREETNODE_IDENTITY_ROOT": str(tmp_path)})
    assert ident == MachineIdentity("10000000feedbeef", app_machine_id(MACHINE_ID))
    assert local_identity({}) == machine_identity()


def test_the_first_machine_to_use_a_key_is_kept_and_a_rotated_key_is_recorded_anew(tmp_path):
    a, b = MachineIdentity("aa11", "a" * 32), MachineIdentity("bb22", "b" * 32)
    key, rotated = b"\x01" * 32, b"\x02" * 32
    assert read_key_record(tmp_path) == {}
    assert adopt_key(tmp_path, key, a) and read_key_record(tmp_path)["hw_serial"] == "aa11"
    assert not adopt_key(tmp_path, key, b)  # the copy on b: the record still names a
    assert copied_from(read_key_record(tmp_path), b) == ["hw_serial", "machine_id"]
    assert key_fingerprint(key) == read_key_record(tmp_path)["key"] and key.hex() not in str(
        read_key_record(tmp_path))
    assert adopt_key(tmp_path, rotated, b) and read_key_record(tmp_path)["hw_serial"] == "bb22"
