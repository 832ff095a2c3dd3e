"""A full and a read-only file system, for real: a tiny tmpfs mounted for the test (needs root)."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from node.buffer import SqliteBuffer
from node.buffer.overflow import VOLATILE_EPOCH_BASE
from tests.buffer.conftest import FakeClock, cycle, stamp


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


def test_full_disk_keeps_sampling_into_bounded_memory_and_recovers(tiny_fs, clock):
    buf = SqliteBuffer(tiny_fs / "buffer.db", "node-1", clock=clock, timer=clock, overflow_readings=300)
    results = [buf.put(cycle(i, 15), stamp(i)) for i in range(10)]
    assert all(r.durable for r in results)
    fill(tiny_fs)
    for i in range(10, 200):
        results.append(buf.put(cycle(i, 15), stamp(i)))
        assert buf.stats().overflow_readings <= 300
    assert not results[-1].durable and results[-1].first_seq == -1  # no number of the file's
    st = buf.stats()
    assert st.overflow_readings == 300 and st.dropped_total > 0
    (tiny_fs / "filler").unlink()
    clock.t += 10  # past the retry interval
    results.append(buf.put(cycle(200, 15), stamp(200)))
    assert results[-1].durable and buf.stats().overflow_readings == 0
    batch = buf.claim(10**6)
    # what waited in memory went to the file as if it never waited, numbered on from what was there
    on_disk = 15 * sum(r.durable for r in results[:-1])
    assert [r.seq for r in batch.readings] == list(range(1, on_disk + 300 + 15 + 1))
    assert results[-1].first_seq == on_disk + 300 + 1
    # what the bound dropped is an exact gap in a volatile epoch of its own (never the file's numbers)
    epochs = {g.epoch for g in batch.gaps}
    assert len(epochs) == 1 and epochs.pop() >= VOLATILE_EPOCH_BASE
    assert [g.reason for g in batch.gaps] == ["disk_full"] and batch.gaps[0].first_seq == 1
    assert sum(g.count for g in batch.gaps) == st.dropped_total == batch.gaps[0].last_seq
    assert "disk_full" in [i.kind for i in batch.incidents]
    buf.close()


def test_the_disk_is_retried_on_the_monotonic_timer_whatever_the_wall_clock_does(tiny_fs, clock):
    """#21: a wall clock stepped back an hour while the disk refused writes stalled the retry an hour."""
    timer = FakeClock(100.0)
    buf = SqliteBuffer(tiny_fs / "buffer.db", "node-1", clock=clock, timer=timer)
    buf.put(cycle(0), stamp(0))
    fill(tiny_fs)
    # a cycle is one small row: the WAL's last, partly used block may still take one or two
    assert not all(buf.put(cycle(i), stamp(i)).durable for i in range(1, 20))
    (tiny_fs / "filler").unlink()
    clock.t -= 3600  # NTP steps the wall clock back an hour
    timer.t += 10  # past the 5 s retry interval
    assert buf.put(cycle(20), stamp(20)).durable and buf.stats().overflow_readings == 0
    buf.close()


def test_read_only_file_system_at_start_then_writable(tiny_fs, clock):
    path = tiny_fs / "buffer.db"
    with SqliteBuffer(path, "node-1", clock=clock, timer=clock) as buf:
        results = [buf.put(cycle(i), stamp(i)) for i in range(2)]
    remount(tiny_fs, "ro")
    buf = SqliteBuffer(path, "node-1", clock=clock, timer=clock)
    r = buf.put(cycle(2), stamp(2))
    assert not r.durable and r.first_seq == -1 and buf.stats().overflow_readings == 5
    held = buf.claim(10)  # #21: what waits in memory is uploadable, and so is the disk_error incident
    assert held.epoch >= VOLATILE_EPOCH_BASE and [x.seq for x in held.readings] == list(range(1, 6))
    assert [i.kind for i in held.incidents] == ["disk_error"]
    buf.release(held.id)
    buf.put(cycle(3), stamp(3))  # waits unnumbered
    remount(tiny_fs, "rw")
    clock.t += 10
    results.append(buf.put(cycle(4), stamp(4)))
    assert results[-1].durable
    batch = buf.claim(1000)
    # cycle 3 (never seen by the central) and 4 went to the file; cycle 2 keeps its volatile number
    assert [x.seq for x in batch.readings] == list(range(1, 21))
    assert buf.stats().overflow_readings == 5
    buf.release(batch.id)
    again = buf.claim(1000, newest_first=True)
    assert again.epoch == held.epoch and [x.seq for x in again.readings] == list(range(1, 6))
    assert buf.ack(again.id) and buf.stats().overflow_readings == 0
    buf.close()


def test_disk_bad_from_boot_what_waits_in_memory_is_uploaded_without_a_number_of_the_file(tiny_fs,
                                                                                          clock):
    """Acknowledged from memory, those readings must never share a number with what the file hands
    out after a restart: they travel in a volatile epoch."""
    path = tiny_fs / "buffer.db"
    with SqliteBuffer(path, "node-1", clock=clock, timer=clock) as buf:
        buf.put(cycle(0), stamp(0))
    remount(tiny_fs, "ro")
    buf = SqliteBuffer(path, "node-1", clock=clock, timer=clock)
    for i in range(1, 5):
        assert not buf.put(cycle(i), stamp(i)).durable
    live = buf.claim(10, newest_first=True)  # whole cycles, newest first
    assert live.epoch >= VOLATILE_EPOCH_BASE and [x.seq for x in live.readings] == list(range(1, 11))
    assert [x.value for x in live.readings][:1] == [3.0]  # cycles 3 and 4, numbered in time order
    assert [i.kind for i in live.incidents] == ["disk_error"]  # the incident leaves too
    assert buf.ack(live.id)  # the central has them: they leave memory, nothing to write
    st = buf.stats()
    assert (st.overflow_readings, st.readings) == (10, 10)  # (the file cannot even be opened)
    rest = buf.claim(100)
    assert rest.epoch == live.epoch and [x.seq for x in rest.readings] == list(range(11, 21))
    assert rest.incidents == []
    assert buf.ack(rest.id)
    buf.close()  # a restart, the card still read-only
    buf = SqliteBuffer(path, "node-1", clock=clock, timer=clock)
    buf.put(cycle(5), stamp(5))
    other = buf.claim(100)
    assert other.epoch >= VOLATILE_EPOCH_BASE and other.epoch != live.epoch  # never the same identity
    buf.release(other.id)
    remount(tiny_fs, "rw")
    clock.t += 10
    assert buf.put(cycle(6), stamp(6)).durable
    buf.close()
    with SqliteBuffer(path, "node-1", clock=clock, timer=clock) as again:
        batch = again.claim(100)
        assert [x.seq for x in batch.readings] == list(range(1, 11))  # cycle 0, then cycle 6
        assert again.put(cycle(7), stamp(7)).first_seq == 11


def test_an_ack_the_full_disk_refuses_is_remembered_not_resent_and_written_when_it_returns(tiny_fs, clock):
    """WAL deletes need space: on a full card an ack cannot be written. Before #21 the claim was dropped
    and the same batches were sent again and again, every round."""
    buf = SqliteBuffer(tiny_fs / "buffer.db", "node-1", clock=clock, timer=clock, overflow_readings=300)
    for i in range(40):
        buf.put(cycle(i), stamp(i))
    fill(tiny_fs)
    sent = []
    for _ in range(10):  # ten rounds of "claim, the central stores it, ack"
        batch = buf.claim(50)
        if batch is None:
            break
        sent += [x.seq for x in batch.readings]
        assert buf.ack(batch.id)
    assert len(sent) == len(set(sent)) == 200  # every reading sent once, none twice
    assert buf.stats().readings == buf.stats().overflow_readings  # only what waits in memory
    (tiny_fs / "filler").unlink()
    clock.t += 10
    buf.put(cycle(40), stamp(40))
    batch = buf.claim(1000)
    assert [x.seq for x in batch.readings] == list(range(201, 206))  # the acked ones are gone from disk
    buf.release(batch.id)
    buf.close()


@pytest.fixture
def ext4_card(tmp_path):
    """An ext4 file system on a loop device that goes read-only on an error, as an SD card does."""
    if os.geteuid() != 0:
        pytest.skip("a loop-mounted ext4 needs root (CI runs as root)")
    img, target = tmp_path / "card.img", tmp_path / "card"
    target.mkdir()
    with open(img, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    mkfs = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True, timeout=60)
    if mkfs.returncode != 0:
        pytest.skip(f"mkfs.ext4 unavailable: {mkfs.stderr.strip() or mkfs.returncode}")
    res = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(img), str(target)],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here: {res.stderr.strip()}")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def go_read_only(target):
    """The kernel's own error path: ext4 remounts itself read-only under the open database."""
    dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", str(target)], capture_output=True, text=True,
                         timeout=10).stdout.strip()
    knob = f"/sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error"
    if not os.path.exists(knob):
        pytest.skip(f"{knob} missing: this kernel cannot inject an ext4 error")
    with open(knob, "w") as f:
        f.write("streetnode test: card failed\n")


def test_a_card_that_turns_read_only_under_the_agent_keeps_uploading_without_resending(ext4_card, clock):
    buf = SqliteBuffer(ext4_card / "buffer.db", "node-1", clock=clock, timer=clock, overflow_readings=500)
    for i in range(30):
        buf.put(cycle(i), stamp(i))
    go_read_only(ext4_card)
    for i in range(30, 40):
        assert not buf.put(cycle(i), stamp(i)).durable  # sampling goes on, into memory
    sent: list[tuple[int, int]] = []
    kinds: list[str] = []
    for _ in range(20):
        batch = buf.claim(40, newest_first=not sent)
        if batch is None:
            break
        sent += [(batch.epoch, x.seq) for x in batch.readings]
        kinds += [i.kind for i in batch.incidents]
        assert buf.ack(batch.id)  # the delete cannot be written: remembered
    assert len(sent) == len(set(sent)) == 200  # each reading once, the ones in memory too
    assert sorted(seq for epoch, seq in sent if epoch == 1) == list(range(1, 151))
    assert sorted(seq for epoch, seq in sent if epoch != 1) == list(range(1, 51))
    assert "disk_error" in kinds
    st = buf.stats()
    assert (st.readings, st.claimed) == (0, 0)
    assert buf.claim(100) is None  # nothing is sent again
    buf.close()


def test_a_claim_from_memory_honours_a_limit_smaller_than_a_cycle(tiny_fs, clock):
    """A bisection (413, a 422 naming a reading) must get down to one reading held in memory too."""
    remount(tiny_fs, "ro")
    buf = SqliteBuffer(tiny_fs / "buffer.db", "node-1", clock=clock, timer=clock)
    buf.put(cycle(0, 15), stamp(0))
    one = buf.claim(1, newest_first=True)
    assert len(one.readings) == 1 and one.readings[0].seq == 1
    buf.dead_letter(one.id, "422 channels[0].v[0]")  # the one reading refused: a gap of its own
    rest = buf.claim(100)
    assert [r.seq for r in rest.readings] == list(range(2, 16)) and rest.epoch == one.epoch
    assert [(g.epoch, g.first_seq, g.last_seq, g.reason) for g in rest.gaps] == [(one.epoch, 1, 1,
                                                                                 "rejected")]
    assert buf.ack(rest.id) and buf.stats().overflow_readings == 0
    buf.close()
