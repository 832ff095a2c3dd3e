"""Environment faults injected through a system root (a fake Pi), never by patching diag."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from node.clock import save_last_known_good_time
from node.diag import system
from node.diag.core import Status
from tests.diag.conftest import THERMAL, THROTTLED, TIMESYNC, context


def test_healthy_fake_pi_passes_environment_checks(config_file, sysroot):
    ctx = context(config_file, sysroot)
    for fn in (system.check_config, system.check_clock, system.check_disk,
               system.check_power, system.check_cpu_temp):
        r = fn(ctx)
        assert r.status is Status.PASS, r
    assert system.check_i2c_bus(ctx, 1).status is Status.PASS


def test_missing_i2c_device_node_says_enable_i2c(config_file, sysroot):
    (sysroot / "dev" / "i2c-1").unlink()
    (sysroot / "dev" / "i2c-20").touch()
    r = system.check_i2c_bus(context(config_file, sysroot), 1)
    assert r.status is Status.FAIL
    assert "/dev/i2c-1 is missing" in r.summary
    assert r.remedy == "enable I2C: sudo raspi-config nonint do_i2c 0, then reboot"
    assert "/dev/i2c-20" in r.detail


def test_i2c_permission_denied_for_the_service_user(config_file, sysroot, state_dir):
    (sysroot / "dev" / "i2c-1").chmod(0o000)
    if os.getuid() == 0:
        os.chown(state_dir, 65534, 65534)  # the daemon's user owns the state dir: make it 'nobody'
        who = "nobody"
    else:
        who = None
    r = system.check_i2c_bus(context(config_file, sysroot), 1)
    assert r.status is Status.FAIL
    assert "permission denied" in r.summary
    assert r.remedy.startswith("add the service user to group i2c: sudo usermod -aG i2c ")
    if who:
        assert f"usermod -aG i2c {who}" in r.remedy


def test_group_i2c_membership_grants_access(config_file, sysroot, state_dir):
    if os.getuid() != 0:
        pytest.skip("needs root to chown files to another user")
    dev = sysroot / "dev" / "i2c-1"
    os.chown(dev, 0, os.getgid())  # root:<our group> 0660; the service user is root here
    os.chown(state_dir, 0, 0)
    assert system.check_i2c_bus(context(config_file, sysroot), 1).status is Status.PASS


def test_emulated_bus_needs_no_device_node(config_file):
    ctx = context(config_file, Path("/"), emulate="calm")
    r = system.check_i2c_bus(ctx, 1)
    assert r.status is Status.PASS and "emulated" in r.summary


@pytest.mark.parametrize(("flags", "status", "words"), [
    ("0x50005", Status.FAIL, "under-voltage NOW"),
    ("0x50000", Status.WARN, "under-voltage occurred since boot"),
    ("0x80008", Status.WARN, "soft temperature limit"),
    ("0x0", Status.PASS, "no under-voltage"),
])
def test_power_flags(config_file, sysroot, flags, status, words):
    (sysroot / THROTTLED).write_text(flags + "\n")
    r = system.check_power(context(config_file, sysroot))
    assert r.status is status, r
    assert words in r.summary
    if flags == "0x50005":
        assert r.remedy == system.REMEDY_POWER and "5.1 V" in r.remedy
        assert "throttled" in r.summary


def test_no_firmware_flags_is_skipped_not_failed(config_file, sysroot):
    (sysroot / THROTTLED).unlink()
    assert system.check_power(context(config_file, sysroot)).status is Status.SKIP


@pytest.mark.parametrize(("milli", "status"), [("45000", Status.PASS), ("74000", Status.WARN),
                                               ("83500", Status.FAIL)])
def test_cpu_temperature(config_file, sysroot, milli, status):
    (sysroot / THERMAL).write_text(milli)
    r = system.check_cpu_temp(context(config_file, sysroot))
    assert r.status is status
    assert f"{int(milli) / 1000:.1f} °C" in r.summary


def test_clock_unsynced_without_last_known_good_time(config_file, sysroot):
    (sysroot / TIMESYNC).unlink()
    r = system.check_clock(context(config_file, sysroot))
    assert r.status is Status.WARN
    assert "not synchronized" in r.summary and "no last known good time" in r.summary
    assert "NTP" in r.remedy


def test_clock_unsynced_says_how_far_it_may_be_off(config_file, sysroot, state_dir):
    (sysroot / TIMESYNC).unlink()
    now = time.time()
    save_last_known_good_time(state_dir, int((now - 3 * 3600) * 1000))
    r = system.check_clock(context(config_file, sysroot, wall=lambda: now))
    assert r.status is Status.WARN
    assert "last known good time" in r.summary and "3.0 h before" in r.summary


def test_clock_claiming_sync_but_suspect_to_the_daemon_warns(config_file, sysroot, state_dir):
    """Issue #20: the daemon found the synced clock a year off the central (its state file)."""
    from node.agent import write_state

    now = time.time()
    assert system.check_clock(context(config_file, sysroot, wall=lambda: now)).status is Status.PASS
    write_state(state_dir, {"updated_at": now, "clock": {"state": "suspect", "offset_ms": 365 * 86_400_000,
                                                         "suspect_s": 120.0}})
    r = system.check_clock(context(config_file, sysroot, wall=lambda: now))
    assert r.status is Status.WARN and "SUSPECT" in r.summary and "365" in r.summary
    assert "behind the central" in r.summary and "NTP" in r.remedy
    write_state(state_dir, {"updated_at": now - 600, "clock": {"state": "suspect", "offset_ms": 1}})
    assert system.check_clock(context(config_file, sysroot, wall=lambda: now)).status is Status.PASS


def test_clock_behind_last_known_good_time_fails(config_file, sysroot, state_dir):
    (sysroot / TIMESYNC).unlink()
    now = time.time()
    save_last_known_good_time(state_dir, int((now + 3 * 86400) * 1000))
    r = system.check_clock(context(config_file, sysroot, wall=lambda: now))
    assert r.status is Status.FAIL and "3.0 days BEHIND" in r.summary


def _mount_tmpfs(path: Path, size: str) -> str | None:
    if os.getuid() != 0 or not shutil.which("mount"):
        return "mounting a tmpfs needs root"
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True, check=False)
    return None if p.returncode == 0 else f"mount -t tmpfs not permitted: {p.stderr.strip()}"


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "sdcard"
    reason = _mount_tmpfs(mnt, "16m")
    if reason:
        pytest.skip(reason)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_nearly_full_on_a_real_small_filesystem(tmp_path, sysroot, small_fs):
    from tests.diag.conftest import config_text
    state = small_fs / "streetnode"
    state.mkdir()
    cfg = tmp_path / "small.toml"
    cfg.write_text(config_text(state))
    assert system.check_disk(context(cfg, sysroot)).status is Status.PASS
    filler = small_fs / "filler"
    with open(filler, "wb") as f:  # fill until ENOSPC, then give back a little
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    os.truncate(filler, filler.stat().st_size - 200 * 1024)
    r = system.check_disk(context(cfg, sysroot))
    assert r.status is Status.FAIL
    assert r.summary.startswith("disk nearly full")
    assert "journalctl --vacuum-size" in r.remedy


def test_buffer_bigger_than_free_space_warns(tmp_path, sysroot, small_fs):
    from tests.diag.conftest import config_text
    state = small_fs / "streetnode"
    state.mkdir()
    cfg = tmp_path / "big.toml"
    cfg.write_text(config_text(state).replace('max_size = "1MiB"', 'max_size = "64MiB"'))
    r = system.check_disk(context(cfg, sysroot))
    assert r.status is Status.WARN and "[buffer].max_size" in r.summary


def _fake_systemctl(bin_dir: Path, show_output: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    s = bin_dir / "systemctl"
    s.write_text(f"#!/bin/sh\ncat <<'OUT'\n{show_output}\nOUT\n")
    s.chmod(0o755)


@pytest.mark.parametrize(("show", "status", "words"), [
    ("LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=0\nMainPID=812\n"
     "ActiveEnterTimestamp=Wed 2026-11-25 06:00:00 UTC", Status.PASS, "daemon running (pid 812)"),
    ("LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=7\nMainPID=9\n"
     "ActiveEnterTimestamp=x", Status.WARN, "restarted 7 times"),
    ("LoadState=loaded\nActiveState=failed\nSubState=failed\nNRestarts=0\nMainPID=0\n"
     "ActiveEnterTimestamp=", Status.FAIL, "daemon not running (failed/failed)"),
    ("LoadState=not-found\nActiveState=inactive\nSubState=dead\nNRestarts=0\nMainPID=0\n"
     "ActiveEnterTimestamp=", Status.FAIL, "not installed"),
])
def test_service_via_systemctl(config_file, sysroot, tmp_path, monkeypatch, show, status, words):
    (sysroot / "run" / "systemd" / "system").mkdir(parents=True)
    _fake_systemctl(tmp_path / "bin", show)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    r = system.check_service(context(config_file, sysroot))
    assert r.status is status, r
    assert words in r.summary
    if status is Status.FAIL and "not running" in words:
        assert "journalctl -u streetnode" in r.remedy


def test_service_without_systemd_says_not_available(config_file, sysroot):
    r = system.check_service(context(config_file, sysroot))
    assert r.status is Status.SKIP and "systemctl not available" in r.summary


def test_service_from_the_agents_state_file_when_systemd_is_absent(config_file, sysroot, state_dir):
    from node.agent import write_state
    write_state(state_dir, {"pid": 4242, "updated_at": time.time() - 3})
    r = system.check_service(context(config_file, sysroot))
    assert r.status is Status.PASS and "pid 4242" in r.summary
    write_state(state_dir, {"pid": 4242, "updated_at": time.time() - 3600})
    r = system.check_service(context(config_file, sysroot))
    assert r.status is Status.FAIL and "daemon not running" in r.summary and "60 min ago" in r.summary
