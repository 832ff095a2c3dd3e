"""`streetnode provision [--check] [--force]`: give a cloned SD card its own buffer and epoch (#20).

A card copied from another node (provisioning by image, or a card moved into a new Pi) carries the
original's buffer: its random ``buffer_id``, its epoch and its numbering. Two agents numbering the
same (epoch, seq) collide at the central. The buffer records the machine that made it
(``made_on_hw_serial``/``made_on_machine_id`` in its meta), and the agent records the machine that
first used the node key (``key.machine`` in the state dir, with the key's fingerprint), so a copy
shows.

- ``--check``: say whether the buffer and the key were made on this machine; exit 1 if copied.
- no option: if the buffer was made on another machine (or ``--force``), with the daemon stopped:
  move it aside (``buffer.db.cloned-<UTC time>``, kept, never sent: its readings are the
  original's), write a random starting epoch to the epoch file, set the daemon's state file aside
  (it describes the original's buffer) and record this machine as the key's. On a card that has
  no buffer yet it only writes the random starting epoch (first boot of an image), so clones that
  keep one node id never number the same epoch. Safe to run on every boot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from node import config
from node.errors import StreetnodeError
from node.i18n import _
from node.identity import (
    KEY_RECORD,
    MachineIdentity,
    copied_from,
    key_fingerprint,
    local_identity,
    read_key_record,
    write_key_record,
)

COPIED_EXIT = 3  # `python -m node.commands.provision`: something was made on another machine


class DaemonRunning(StreetnodeError):
    exit_code = 69


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provision", help=_("give a cloned SD card its own buffer and epoch"),
                       description=_("Check whether the buffer and the node key were made on this "
                                     "machine; on a copied card, set the copied buffer aside and start "
                                     "a fresh one at a random epoch (docs/install.md)."))
    p.add_argument("--check", action="store_true",
                   help=_("only report; exit 1 when the buffer or the key was made on another machine"))
    p.add_argument("--force", action="store_true",
                   help=_("start a fresh buffer even if the copied one cannot be told apart"))
    p.set_defaults(func=provision_cmd)


# ------------------------------------------------------------------ what was recorded where
def buffer_made_on(buffer_path: Path) -> dict[str, str]:
    """The machine the buffer database says made it (``{}``: no file, or made before #20)."""
    from node.buffer.store import peek_meta

    meta = peek_meta(buffer_path)
    return {k[8:]: str(v) for k, v in meta.items() if str(k).startswith("made_on_") and v}


def key_made_on(state_dir: Path, key_file: str | os.PathLike[str] | None) -> dict[str, str]:
    """The machine that first used this key, from the state dir's record (``{}``: no record, another
    key's record, or the key cannot be read by this user)."""
    if not key_file:
        return {}
    try:
        key = Path(key_file).read_bytes().strip()
    except OSError:
        return {}
    record = read_key_record(state_dir)
    if not record or record.get("key") != key_fingerprint(_key_bytes(key)):
        return {}
    return {k: v for k, v in record.items() if k != "key"}


def _key_bytes(text: bytes) -> bytes:
    """The key as the agent loads it (64 hex digits); anything else is fingerprinted as it is."""
    try:
        return bytes.fromhex(text.decode("ascii"))
    except ValueError:
        return text


def record_key_machine(state_dir: Path, key_file: str | os.PathLike[str], here: MachineIdentity) -> bool:
    try:
        key = _key_bytes(Path(key_file).read_bytes().strip())
    except OSError:
        return False
    return write_key_record(state_dir, key, here)


def copy_report(cfg: config.Config, here: MachineIdentity) -> dict[str, Any]:
    """What was made on another machine: ``{"buffer": [keys that differ], "key": [...]}``."""
    return paths_report(cfg.state_dir, cfg.central.get("key_file"), here)


def paths_report(state_dir: Path, key_file: str | os.PathLike[str] | None,
                 here: MachineIdentity) -> dict[str, Any]:
    from node.buffer.sqlite import FILE_NAME

    return {"buffer": copied_from(buffer_made_on(Path(state_dir) / FILE_NAME), here),
            "key": copied_from(key_made_on(Path(state_dir), key_file), here) if key_file else [],
            "here": here.as_dict()}


def copy_lines(report: dict[str, Any]) -> list[str]:
    """One warning line per copied part (empty when nothing is copied); used by status and diag."""
    lines = []
    if report.get("buffer"):
        lines.append(_("the buffer was made on another machine ({what} differs): this card is a copy and "
                       "numbers like its original; run `sudo streetnode provision`").format(
            what=", ".join(report["buffer"])))
    if report.get("key"):
        lines.append(_("the node key was recorded on another machine ({what} differs): give this Pi its "
                       "own node id and key (`streetnode-central node add`)").format(
            what=", ".join(report["key"])))
    return lines


# ------------------------------------------------------------------ the command
def _daemon_pid(state_dir: Path) -> int | None:
    from node.agent import read_state

    st = read_state(state_dir) or {}
    pid = st.get("pid")
    updated = st.get("updated_at")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    if isinstance(updated, int | float) and time.time() - updated > 60:
        return None  # a state file a minute old: the daemon that wrote it is gone (its pid may be reused)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def provision_cmd(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    here = local_identity()
    report = copy_report(cfg, here)
    for line in copy_lines(report):
        print(line)
    if args.check:
        if not report["buffer"] and not report["key"]:
            print(_("identity: the buffer and the node key belong to this machine (or were never "
                    "recorded)"))
            return 0
        return 1
    return provision(cfg, here, force=bool(args.force), copied=bool(report["buffer"]))


def provision(cfg: config.Config, here: MachineIdentity, *, force: bool = False, copied: bool = False) -> int:
    """Do what the module doc says; prints one line per action."""
    from node.agent import STATE_FILE
    from node.buffer.collision import provision_epoch
    from node.buffer.sqlite import FILE_NAME
    from node.buffer.store import quarantine, read_epoch_file, write_epoch_file

    state_dir = cfg.state_dir
    buffer_path = state_dir / FILE_NAME
    epoch_file = Path(str(buffer_path) + ".epoch")
    key_file = cfg.central.get("key_file")
    fresh = not buffer_path.exists() and read_epoch_file(epoch_file) == 0
    if not (copied or force or fresh):
        print(_("identity: nothing to do; the buffer was made on this machine"))
        return 0
    pid = _daemon_pid(state_dir)
    if pid is not None:
        raise DaemonRunning(_("the daemon is running (pid {pid}): stop it first with `sudo systemctl stop "
                              "streetnode`").format(pid=pid))
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        if buffer_path.exists():
            moved = quarantine(buffer_path, now, "cloned")
            print(_("set the copied buffer aside: {path} (kept; its readings are the original's)").format(
                path=moved))
        state = state_dir / STATE_FILE
        if state.exists():
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            aside = state.with_name(f"{STATE_FILE}.cloned-{stamp}")
            os.replace(state, aside)
            print(_("set the copied state file aside: {path}").format(path=aside))
        epoch = provision_epoch()
        write_epoch_file(epoch_file, epoch - 1, provisioned=True)
    except OSError as e:
        raise StreetnodeError(_("cannot provision {path}: {error}").format(path=state_dir, error=e)) from None
    print(_("this card starts its own buffer at epoch {epoch} when the daemon starts").format(epoch=epoch))
    if key_file and Path(key_file).exists():
        if record_key_machine(state_dir, key_file, here):
            print(_("recorded this machine as the node key's: {path}").format(path=state_dir / KEY_RECORD))
        else:
            print(_("could not record this machine for the node key {path} (run as root)").format(
                path=key_file), file=sys.stderr)
    print(_("if this Pi is a second pole, give it its own node id and key (`streetnode-central node add`, "
            "docs/install.md)"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m node.commands.provision STATE_DIR KEY_FILE``: install.sh's check of a copied card
    (it knows the paths, possibly under ``--root``, not a loadable config). Prints one line per copied
    part; exit 3 when something is copied (1 stays Python's own failure), else 0."""
    from node.i18n import set_language

    set_language()
    args = (sys.argv[1:] if argv is None else argv) + ["", ""]
    report = paths_report(Path(args[0]), args[1] or None, local_identity())
    lines = copy_lines(report)
    for line in lines:
        print(line)
    return COPIED_EXIT if lines else 0


if __name__ == "__main__":
    sys.exit(main())
