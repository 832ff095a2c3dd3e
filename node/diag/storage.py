"""Buffer health: integrity, backlog, oldest and newest reading, gaps and incidents."""

from __future__ import annotations

import os

from node.diag.context import DiagContext
from node.diag.core import Result, fail, ok, skip, warn
from node.diag.system import fmt_age
from node.errors import StorageError

BUFFER_FILE = "buffer.db"
BACKLOG_WARN_S = 3600.0  # oldest unsent reading older than this: uploads are not getting through
STALE_WARN_S = 600.0  # newest reading older than this: the sampler is not storing

REMEDY_CORRUPT = ("send `streetnode bundle` first, then: sudo systemctl stop streetnode; "
                  "mv {path} {path}.corrupt; sudo systemctl start streetnode (a fresh buffer starts)")


def check_buffer(ctx: DiagContext) -> Result:
    if ctx.cfg is None:
        return skip("buffer", "not checked: the configuration is invalid")
    from node.buffer import SqliteBuffer

    path = ctx.state_dir / BUFFER_FILE
    sudo = "run diag as root: sudo streetnode diag"
    if ctx.state_dir.is_dir() and not os.access(ctx.state_dir, os.R_OK | os.X_OK):
        return warn("buffer", f"cannot look into {ctx.state_dir} as this user", sudo)
    if path.exists() and not os.access(path, os.R_OK):
        return warn("buffer", f"cannot read {path} as this user", sudo)
    if not path.exists():
        return warn("buffer", f"no buffer at {path}: the daemon has not stored a reading yet",
                    "start the daemon: sudo systemctl start streetnode")
    try:
        st = SqliteBuffer.inspect(path, check=True)
    except StorageError as e:
        return fail("buffer", f"buffer unreadable: {e}", REMEDY_CORRUPT.format(path=path))
    if st.integrity not in (None, "ok"):
        return fail("buffer", f"buffer corrupt: integrity check says {st.integrity}",
                    REMEDY_CORRUPT.format(path=path))
    now = ctx.wall()
    size = f"{st.bytes_on_disk / 1024**2:.1f} MiB"
    text = f"integrity ok, {st.readings} readings waiting ({size})"
    if st.oldest_wall_ms is not None:
        text += f", oldest {fmt_age(now - st.oldest_wall_ms / 1000)} old"
    problems: list[tuple[str, str]] = []
    if st.newest_wall_ms is not None and now - st.newest_wall_ms / 1000 > STALE_WARN_S:
        problems.append((f"newest reading is {fmt_age(now - st.newest_wall_ms / 1000)} old: nothing "
                         "stored lately", "check the service check above and journalctl -u streetnode"))
    if st.oldest_wall_ms is not None and now - st.oldest_wall_ms / 1000 > BACKLOG_WARN_S:
        problems.append((f"backlog: {st.readings} readings not uploaded, oldest "
                         f"{fmt_age(now - st.oldest_wall_ms / 1000)} old",
                         "uploads are not getting through: see the central.* checks"))
    if st.gaps_pending:
        problems.append((f"{st.gaps_pending} gap(s) of lost readings recorded (evicted, disk full or "
                         "rejected)", "raise [buffer].max_size or free disk space; fix the uplink"))
    if st.incidents_pending:
        problems.append((f"{st.incidents_pending} incident(s) waiting for the central",
                         "look at the journal: journalctl -u streetnode -p warning"))
    if problems:
        return warn("buffer", f"{text}; " + "; ".join(p for p, _ in problems),
                    "; ".join(dict.fromkeys(r for _, r in problems)))
    return ok("buffer", text)
