"""Give memory freed by a backlog drain back to the system (issue #22, docs/uploader.md).

A drain round builds and frees tens of thousands of readings, their JSON and gzip buffers. Python
returns the freed blocks to glibc's malloc, which keeps them (in the arena of whichever thread
freed them) for later use: the process's RSS stays at the drain's peak for good, ~3 MiB above
the steady level on a 7-day backlog. ``malloc_trim(0)`` hands free pages back (glibc ≥ 2.8 also
releases whole free pages inside its heaps). It costs a few milliseconds, so the uploader calls it
only after a round that moved many readings. Elsewhere (musl, macOS) it does nothing.
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


def release_freed_memory() -> bool:
    """True when the C library was asked to return free memory to the system."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
