"""Load the node's HMAC key from ``central.key_file``.

The key is the node's only secret: the node refuses to start when the file is
missing, empty, or readable by anyone but its owner (`KeyFileError`, exit 77).
The file holds the key as 64 hex digits, exactly as `streetnode-central node add`
prints it (surrounding whitespace is ignored); `load_key` returns the 32 key bytes.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from node.errors import KeyFileError

_HEX_KEY = re.compile(rb"[0-9a-fA-F]{64}")


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Return the key bytes of ``path`` or raise `KeyFileError` with a one-line remedy."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"central.key_file: {p} does not exist; copy the key printed by "
            f"`streetnode-central node add` there and run `chmod 600 {p}`"
        ) from None
    except PermissionError:
        raise KeyFileError(f"central.key_file: {p} cannot be read by this user; "
                           f"run `chown` so the service user owns it") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"central.key_file: {p} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"central.key_file: {p} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {p}`"
        )
    try:
        key = p.read_bytes().strip()
    except PermissionError:
        raise KeyFileError(f"central.key_file: {p} cannot be read by this user; "
                           f"run `chown` so the service user owns it") from None
    if not key:
        raise KeyFileError(f"central.key_file: {p} is empty; copy the key printed by "
                           f"`streetnode-central node add` into it")
    if not _HEX_KEY.fullmatch(key):
        raise KeyFileError(f"central.key_file: {p} does not hold a key (expected 64 hex digits, "
                           f"as printed by `streetnode-central node add`)")
    return bytes.fromhex(key.decode("ascii"))
