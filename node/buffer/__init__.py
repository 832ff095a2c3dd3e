"""The node's store-and-forward buffer (issue #4): `SqliteBuffer` on the SD card, `MemoryBuffer` for tests."""

from node.buffer.base import BufferStats, PutResult
from node.buffer.memory import MemoryBuffer
from node.buffer.sqlite import SqliteBuffer

__all__ = ["BufferStats", "MemoryBuffer", "PutResult", "SqliteBuffer"]
