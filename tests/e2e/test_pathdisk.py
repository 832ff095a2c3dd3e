"""#21: a lying path and a read-only card, real processes (see tests/e2e/pathdisk.py).

Needs root (loop device, mount), as CI has; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e.pathdisk import PathDiskRun


def test_a_lying_path_and_a_read_only_card_lose_nothing_and_cost_no_more_uplink(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("a loop-mounted ext4 card needs root (CI runs as root)")
    for tool in ("mkfs.ext4", "e2fsck", "losetup", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (deploy/ci-deps.sh installs e2fsprogs)")
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no loop devices on this machine (/dev/loop-control missing)")
    fig = PathDiskRun(tmp_path / "run", f"sqlite:///{tmp_path / 'central.db'}").run()
    with capsys.disabled():
        print("\n" + fig.table(), flush=True)
    assert fig.lost == 0 and fig.duplicates == 0 and fig.overlap == 0
    assert fig.volatile_readings > 0 and fig.stored > 0
    assert fig.path_bytes_per_s <= 2 * fig.normal_bytes_per_s
    assert fig.disk_bytes_per_s <= 2 * fig.normal_bytes_per_s
