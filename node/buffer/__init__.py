"""The node's store-and-forward buffer (issue #4): `SqliteBuffer` on the SD card, `MemoryBuffer` for tests."""

from typing import Any

from node.buffer.base import BufferStats, PutResult
from node.buffer.sqlite import SqliteBuffer

__all__ = ["BufferStats", "MemoryBuffer", "PutResult", "SqliteBuffer"]


def __getattr__(name: str) -> Any:
    # imported on first use: the daemon never needs it, and keeps what it imports for years (#22)
    if name == "MemoryBuffer":
        from node.buffer.memory import MemoryBuffer

        return MemoryBuffer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
