"""A full and a read-only file system, for real: a tiny tmpfs mounted for the test (needs root)."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from node.buffer import SqliteBuffer
from tests.buffer.conftest import cycle, stamp


def _mount(target, *opts):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", str(target)],
                          capture_output=True, text=True, timeout=20)


@pytest.fixture
def tiny_fs(tmp_path):
    target = tmp_path / "mnt"
    target.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root (CI runs as root)")
    res = _mount(target, "size=1m", "mode=0755")
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=20)


def remount(target, mode):
    res = subprocess.run(["mount", "-o", f"remount,{mode}", str(target)], capture_output=True, text=True,
                         timeout=20)
    assert res.returncode == 0, res.stderr


def fill(target):
    with contextlib.suppress(OSError), open(target / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)


def accounted(buf, results):
    """Every seq handed out is either readable or inside a gap, and never both."""
    batch = buf.claim(10**6)
    present = {r.seq for r in batch.readings}
    gapped = {s for g in batch.gaps for s in range(g.first_seq, g.last_seq + 1)}
    assert not present & gapped
    handed = {s for r in results for s in range(r.first_seq, r.last_seq + 1)}
    assert handed <= present | gapped
    return batch, present, gapped


def test_full_disk_keeps_sampling_into_bounded_memory_and_recovers(tiny_fs, clock):
    buf = SqliteBuffer(tiny_fs / "buffer.db", "node-1", clock=clock, overflow_readings=300)
    results = [buf.put(cycle(i, 15), stamp(i)) for i in range(10)]
    assert all(r.durable for r in results)
    fill(tiny_fs)
    for i in range(10, 200):
        results.append(buf.put(cycle(i, 15), stamp(i)))
        assert buf.stats().overflow_readings <= 300
    assert not results[-1].durable
    seqs = [s for r in results for s in (r.first_seq, r.last_seq)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # numbering went on, no reuse
    st = buf.stats()
    assert st.overflow_readings == 300 and st.dropped_total > 0
    (tiny_fs / "filler").unlink()
    clock.t += 10  # past the retry interval
    results.append(buf.put(cycle(200, 15), stamp(200)))
    assert results[-1].durable and buf.stats().overflow_readings == 0
    batch, present, gapped = accounted(buf, results)
    assert {g.reason for g in batch.gaps} <= {"disk_full"} and gapped
    assert sum(g.count for g in batch.gaps) == st.dropped_total
    assert set(range(results[-21].first_seq, results[-1].last_seq + 1)) <= present  # the overflow
    assert "disk_full" in [i.kind for i in batch.incidents]
    buf.close()


def test_read_only_file_system_at_start_then_writable(tiny_fs, clock):
    path = tiny_fs / "buffer.db"
    with SqliteBuffer(path, "node-1", clock=clock) as buf:
        results = [buf.put(cycle(i), stamp(i)) for i in range(2)]
    remount(tiny_fs, "ro")
    buf = SqliteBuffer(path, "node-1", clock=clock)
    r = buf.put(cycle(2), stamp(2))
    assert not r.durable and r.first_seq == 11  # numbering continues from what is on disk
    assert buf.claim(10) is None and buf.stats().overflow_readings == 5
    remount(tiny_fs, "rw")
    clock.t += 10
    results += [r, buf.put(cycle(3), stamp(3))]
    assert results[-1].durable
    batch, present, gapped = accounted(buf, results)
    assert present == set(range(1, 21)) and not gapped
    assert [i.kind for i in batch.incidents] == ["disk_error"]
    buf.close()
