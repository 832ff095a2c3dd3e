"""Give memory freed by a backlog drain back to the system (issue #22, docs/uploader.md).

A drain round builds and frees tens of thousands of readings, their JSON and gzip buffers. Python
returns the freed blocks to glibc's malloc, which keeps them (in the arena of whichever thread
freed them) for later use: the process's RSS stays at the drain's peak for good, ~3 MiB above
the steady level on a 7-day backlog. ``malloc_trim(0)`` hands free pages back (glibc ≥ 2.8 also
releases whole free pages inside its heaps). It costs a few milliseconds, so the uploader calls it
only after a round that moved many readings. Elsewhere (musl, macOS) it does nothing.

What a trim cannot undo is a heap a drain has spread: glibc serves blocks below its mmap threshold
(128 KiB, raised at run time to the largest block freed so far) from the one heap, so a drain's
big transient blocks (column arrays, JSON text, zlib's 64 KiB state) land between long-lived ones,
and the holes they leave are re-touched by later allocations. `keep_large_blocks_out_of_heap` fixes
the threshold at 32 KiB for the daemon's life (docs/uploader.md: the month soak lost its +0.6 MiB
drain step; the cost is an mmap/munmap pair per such block).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LARGE_BLOCK_BYTES = 32 * 1024


@functools.lru_cache(maxsize=1)
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: no ldconfig run at start
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt  # type: ignore[no-any-return]


def keep_large_blocks_out_of_heap(threshold_bytes: int = LARGE_BLOCK_BYTES) -> bool:
    """Blocks of ``threshold_bytes`` and more get pages of their own, returned when freed.

    Called once by the daemon after its imports (not at import: no side effects there). Setting the
    threshold also stops glibc from raising it by itself. True when the C library took it.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1


def release_freed_memory() -> bool:
    """True when the C library was asked to return free memory to the system."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
