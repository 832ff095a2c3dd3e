"""node/memory.py: after `keep_large_blocks_out_of_heap`, a 64 KiB block has pages of its own (#22).

Run in a child process: the malloc setting is process-wide and must not change this test run's.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes
from node.memory import keep_large_blocks_out_of_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                             "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
def mapped():
    return libc.mallinfo2().hblkhd

taken = keep_large_blocks_out_of_heap()
before = mapped()
block = bytearray(64 * 1024)
held = mapped()
del block
print(taken, held - before, mapped() - before)
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc_with_mallinfo2(),
                    reason="needs glibc >= 2.33 (mallinfo2) to observe mmapped blocks")
def test_large_blocks_get_their_own_pages_and_return_them():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
                         timeout=60)
    taken, held, after = out.stdout.split()
    assert taken == "True"
    assert int(held) >= 64 * 1024  # served by mmap, not from the heap
    assert int(after) == 0  # and unmapped when freed
