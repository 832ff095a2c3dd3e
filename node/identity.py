"""The machine a node runs on, as the central and `diag` see it (issue #20).

Two Pis running one SD card image share the node id, the key and (if the buffer was copied too)
the buffer; what differs is the hardware. Every batch's health carries:

- ``hw_serial``: the Pi's serial number (``/proc/device-tree/serial-number``, else the ``Serial``
  line of ``/proc/cpuinfo``); null on a machine that has none;
- ``machine_id``: derived from ``/etc/machine-id`` the way systemd asks applications to
  (``sd_id128_get_machine_app_specific``: the machine id is confidential, so it is never sent
  as is): HMAC-SHA256 keyed by the machine id over streetnode's application id, first 128 bits,
  hex. Stable per machine, different on a clone that got its own machine id at first boot;
- ``buffer_id``: the buffer database's random id (node/buffer/collision.py).

The paths are parameters so tests give their own files; ``STREETNODE_IDENTITY_ROOT`` puts all three
under another root (an image being prepared with ``install.sh --root``, or two emulated Pis on one
test machine). Nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEVICE_TREE_SERIAL = Path("/proc/device-tree/serial-number")
CPUINFO = Path("/proc/cpuinfo")
MACHINE_ID = Path("/etc/machine-id")
# streetnode's application id for the app-specific machine id (a fixed random 128-bit value)
APP_ID = bytes.fromhex("5b1c0d6e9a3f4e27b8c2d41f06a97e53")
_MAX_READ = 64 * 1024
_SERIAL = re.compile(r"[0-9A-Za-z]{4,64}")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")
ROOT_ENV = "STREETNODE_IDENTITY_ROOT"
KEY_RECORD = "key.machine"  # in the state dir: the machine that first used the node key (JSON)


@dataclass(frozen=True, slots=True)
class MachineIdentity:
    hw_serial: str | None
    machine_id: str | None  # app-specific, see the module doc

    def as_dict(self) -> dict[str, str | None]:
        return {"hw_serial": self.hw_serial, "machine_id": self.machine_id}


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_READ).decode("ascii", "replace")
    except OSError:
        return None


def hw_serial(device_tree: Path = DEVICE_TREE_SERIAL, cpuinfo: Path = CPUINFO) -> str | None:
    """The board's serial number, lowercase; None when there is none (or it is all zeros)."""
    text = _read(device_tree)
    candidates = [text.strip("\x00 \n\t")] if text else []
    info = _read(cpuinfo) or ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "serial":
            candidates.append(value.strip())
    for candidate in candidates:
        if _SERIAL.fullmatch(candidate) and candidate.strip("0"):
            return candidate.lower()
    return None


def app_machine_id(raw: str) -> str | None:
    """The app-specific form of a machine id (32 hex digits), or None when ``raw`` is not one."""
    raw = raw.strip().lower()
    if not _MACHINE_ID.fullmatch(raw):
        return None  # empty, "uninitialized" (first boot not finished) or foreign
    return hmac.new(bytes.fromhex(raw), APP_ID, hashlib.sha256).hexdigest()[:32]


def machine_identity(*, device_tree: Path = DEVICE_TREE_SERIAL, cpuinfo: Path = CPUINFO,
                     machine_id: Path = MACHINE_ID) -> MachineIdentity:
    """This machine's identity (reads three small files; never raises)."""
    raw = _read(machine_id)
    return MachineIdentity(hw_serial(device_tree, cpuinfo), app_machine_id(raw) if raw else None)


def local_identity(environ: Mapping[str, str] = os.environ) -> MachineIdentity:
    """This machine's identity, or the one under ``$STREETNODE_IDENTITY_ROOT`` when it is set."""
    root = environ.get(ROOT_ENV)
    if not root:
        return machine_identity()
    base = Path(root)

    def under(p: Path) -> Path:
        return base / p.relative_to("/")

    return machine_identity(device_tree=under(DEVICE_TREE_SERIAL), cpuinfo=under(CPUINFO),
                            machine_id=under(MACHINE_ID))


def copied_from(recorded: dict[str, str | None], here: MachineIdentity) -> list[str]:
    """The keys on which something recorded on another machine (``made_on_hw_serial``,
    ``made_on_machine_id``) differs from this machine; [] when it matches or nothing is known."""
    out = []
    for key, value in (("hw_serial", here.hw_serial), ("machine_id", here.machine_id)):
        seen = recorded.get(key)
        if seen and value and seen != value:
            out.append(key)
    return out


# ------------------------------------------------------------------ the node key's first machine
def key_fingerprint(key: bytes) -> str:
    """A short digest naming the key (its first 64 bits of SHA-256: says nothing of the key)."""
    return hashlib.sha256(b"streetnode-key-fingerprint\n" + key).hexdigest()[:16]


def read_key_record(state_dir: Path) -> dict[str, str]:
    """``{"key": fingerprint, "hw_serial", "machine_id"}`` of the state dir's key record ({}: none)."""
    try:
        data = json.loads((Path(state_dir) / KEY_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("key", "hw_serial", "machine_id") and v}


def write_key_record(state_dir: Path, key: bytes, here: MachineIdentity) -> bool:
    """Record ``here`` as the machine of ``key`` (atomic); False when it cannot be written."""
    path = Path(state_dir) / KEY_RECORD
    tmp = path.with_name(f".{KEY_RECORD}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"key": key_fingerprint(key), **here.as_dict(),
                                   "recorded_ms": int(time.time() * 1000)}) + "\n")
        os.replace(tmp, path)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False


def adopt_key(state_dir: Path, key: bytes, here: MachineIdentity) -> bool:
    """At the agent's start: record this machine for a key that has no record yet (a new install, or
    a rotated key). A record of this key made elsewhere is kept: that is what shows a copied card.
    True when it wrote the record."""
    record = read_key_record(state_dir)
    if record.get("key") == key_fingerprint(key):
        return False
    return write_key_record(state_dir, key, here)
