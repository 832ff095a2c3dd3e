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
from node.i18n import _

_HEX_KEY = re.compile(rb"[0-9a-fA-F]{64}")


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Return the key bytes of ``path`` or raise `KeyFileError` with a one-line remedy."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyFileError(_("central.key_file: {path} does not exist; copy the key printed by "
                             "`streetnode-central node add` there and run `chmod 600 {path}`").format(
            path=p)) from None
    except PermissionError:
        raise KeyFileError(_("central.key_file: {path} cannot be read by this user; run `chown` so the "
                             "service user owns it").format(path=p)) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(_("central.key_file: {path} is not a regular file").format(path=p))
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            _("central.key_file: {path} is accessible by group or others (mode {mode}); run `chmod 600 "
              "{path}`").format(path=p, mode=f"{stat.S_IMODE(st.st_mode):04o}")
        )
    try:
        key = p.read_bytes().strip()
    except PermissionError:
        raise KeyFileError(_("central.key_file: {path} cannot be read by this user; run `chown` so the "
                             "service user owns it").format(path=p)) from None
    if not key:
        raise KeyFileError(_("central.key_file: {path} is empty; copy the key printed by `streetnode-central "
                             "node add` into it").format(path=p))
    if not _HEX_KEY.fullmatch(key):
        raise KeyFileError(_("central.key_file: {path} does not hold a key (expected 64 hex digits, as "
                             "printed by `streetnode-central node add`)").format(path=p))
    return bytes.fromhex(key.decode("ascii"))
