"""Buffer health on real SQLite files written by the real buffer."""

from __future__ import annotations

import time

from node.buffer import SqliteBuffer
from node.diag.core import Status
from node.diag.storage import BUFFER_FILE, check_buffer
from node.model import Sample, Stamp
from tests.diag.conftest import context


def fill(state_dir, *, age_s: float = 0.0, cycles: int = 3, incident: bool = False) -> None:
    buf = SqliteBuffer(state_dir / BUFFER_FILE, "hn-test-0001")
    now_ms = int((time.time() - age_s) * 1000)
    for i in range(cycles):
        buf.put([Sample("weather.temperature_c", 29.5 + i)], Stamp(now_ms + i * 1000, i * 1000, "b", True))
    if incident:
        buf.record_incident("sensor_fault", "weather: EIO")
    buf.close()


def test_fresh_buffer_passes(config_file, sysroot, state_dir):
    fill(state_dir)
    r = check_buffer(context(config_file, sysroot))
    assert r.status is Status.PASS, r
    assert "integrity ok, 3 readings waiting" in r.summary


def test_no_buffer_yet_warns(config_file, sysroot):
    r = check_buffer(context(config_file, sysroot))
    assert r.status is Status.WARN and "no buffer" in r.summary
    assert "systemctl start streetnode" in r.remedy


def test_old_backlog_and_incidents_warn(config_file, sysroot, state_dir):
    fill(state_dir, age_s=5 * 3600, incident=True)
    r = check_buffer(context(config_file, sysroot))
    assert r.status is Status.WARN
    assert "backlog: 3 readings not uploaded" in r.summary
    assert "nothing stored lately" in r.summary
    assert "1 incident(s)" in r.summary
    assert "central.*" in r.remedy


def test_corrupt_buffer_fails(config_file, sysroot, state_dir):
    (state_dir / BUFFER_FILE).write_bytes(b"SQLite format 3\0" + b"\xde\xad" * 4000)
    r = check_buffer(context(config_file, sysroot))
    assert r.status is Status.FAIL
    assert "streetnode bundle" in r.remedy and ".corrupt" in r.remedy
