"""Buffer health: integrity, backlog, oldest and newest reading, gaps and incidents."""

from __future__ import annotations

import os

from node.diag.context import DiagContext
from node.diag.core import Result, fail, ok, skip, warn
from node.diag.identity import identity_problems
from node.diag.system import fmt_age
from node.errors import StorageError
from node.i18n import N_, _, integer, number

BUFFER_FILE = "buffer.db"
BACKLOG_WARN_S = 3600.0  # oldest unsent reading older than this: uploads are not getting through
STALE_WARN_S = 600.0  # newest reading older than this: the sampler is not storing

REMEDY_CORRUPT = N_("send `streetnode bundle` first, then: sudo systemctl stop streetnode; mv {path} "
                    "{path}.corrupt; sudo systemctl start streetnode (a fresh buffer starts)")


def check_buffer(ctx: DiagContext) -> Result:
    if ctx.cfg is None:
        return skip("buffer", _("not checked: the configuration is invalid"))
    from node.buffer import SqliteBuffer

    path = ctx.state_dir / BUFFER_FILE
    sudo = _("run diag as root: sudo streetnode diag")
    if ctx.state_dir.is_dir() and not os.access(ctx.state_dir, os.R_OK | os.X_OK):
        return warn("buffer", _("cannot look into {path} as this user").format(path=ctx.state_dir), sudo)
    if path.exists() and not os.access(path, os.R_OK):
        return warn("buffer", _("cannot read {path} as this user").format(path=path), sudo)
    if not path.exists():
        return warn("buffer", _("no buffer at {path}: the daemon has not stored a reading yet").format(
            path=path), _("start the daemon: sudo systemctl start streetnode"))
    try:
        st = SqliteBuffer.inspect(path, check=True)
    except StorageError as e:
        return fail("buffer", _("buffer unreadable: {reason}").format(reason=e),
                    _(REMEDY_CORRUPT).format(path=path))
    if st.integrity not in (None, "ok"):
        return fail("buffer", _("buffer corrupt: integrity check says {result}").format(result=st.integrity),
                    _(REMEDY_CORRUPT).format(path=path))
    now = ctx.wall()
    size = number(st.bytes_on_disk / 1024**2, 1)
    if st.oldest_wall_ms is not None:
        text = _("integrity ok, {readings} readings waiting ({size} MiB), oldest {age} old").format(
            readings=integer(st.readings), size=size, age=fmt_age(now - st.oldest_wall_ms / 1000))
    else:
        text = _("integrity ok, {readings} readings waiting ({size} MiB)").format(
            readings=integer(st.readings), size=size)
    problems: list[tuple[str, str]] = []
    if st.newest_wall_ms is not None and now - st.newest_wall_ms / 1000 > STALE_WARN_S:
        problems.append((_("newest reading is {age} old: nothing stored lately").format(
            age=fmt_age(now - st.newest_wall_ms / 1000)),
                         _("check the service check above and journalctl -u streetnode")))
    if st.oldest_wall_ms is not None and now - st.oldest_wall_ms / 1000 > BACKLOG_WARN_S:
        problems.append((_("backlog: {readings} readings not uploaded, oldest {age} old").format(
            readings=integer(st.readings), age=fmt_age(now - st.oldest_wall_ms / 1000)),
                         _("uploads are not getting through: see the central.* checks")))
    if st.gaps_pending:
        problems.append((_("{count} gap(s) of lost readings recorded (evicted, disk full or "
                           "rejected)").format(count=st.gaps_pending),
                         _("raise [buffer].max_size or free disk space; fix the uplink")))
    if st.incidents_pending:
        problems.append((_("{count} incident(s) waiting for the central").format(count=st.incidents_pending),
                         _("look at the journal: journalctl -u streetnode -p warning")))
    problems += identity_problems(ctx)  # a copied card, numbering conflicts (#20)
    if problems:
        return warn("buffer", f"{text}; " + "; ".join(p for p, _r in problems),
                    "; ".join(dict.fromkeys(r for _p, r in problems)))
    return ok("buffer", text)
