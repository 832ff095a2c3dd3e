"""Body size limits of the receiver (kept apart so the CLI can show them without the web stack)."""

DEFAULT_MAX_BODY = 16 * 1024 * 1024  # compressed bytes on the wire
DEFAULT_MAX_DECOMPRESSED = 64 * 1024 * 1024  # after gzip: the gzip-bomb bound
