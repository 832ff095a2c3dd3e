"""Identity (#20), part of the ``buffer`` check: is this card's buffer and key this machine's, and did
the central report our numbering colliding with another device's (a cloned card) or with our own
past (a rolled-back buffer)? Nothing to say: no line (the buffer check's text stays as it was)."""

from __future__ import annotations

from node.diag.context import DiagContext
from node.i18n import N_, _, integer

REMEDY_COPIED = N_("a copied card numbers like its original: sudo systemctl stop streetnode; sudo streetnode "
                   "provision; sudo systemctl start streetnode (docs/install.md, cloning a card)")
REMEDY_CONFLICTS = N_("if another Pi uses this node id, give it its own id and key (streetnode-central node "
                      "add); the readings were kept in a new epoch")


def identity_problems(ctx: DiagContext) -> list[tuple[str, str]]:
    """(problem, remedy) pairs, as the buffer check lists them."""
    if ctx.cfg is None:
        return []
    from node.agent import read_state
    from node.commands.provision import copy_lines, copy_report
    from node.identity import ROOT_ENV, local_identity

    here = local_identity({ROOT_ENV: str(ctx.sysroot)}) if ctx.explicit_root else local_identity()
    problems = [(line, _(REMEDY_COPIED)) for line in copy_lines(copy_report(ctx.cfg, here))]
    state = read_state(ctx.state_dir) or {}
    upload = state.get("upload") if isinstance(state.get("upload"), dict) else {}
    clashes = int(upload.get("identity_clashes") or 0)
    rollbacks = int(upload.get("rollbacks") or 0)
    if clashes or rollbacks:
        conflicts = int(upload.get("conflicts") or 0)
        text = _("the central reported {conflicts} readings numbered like other readings it holds "
                 "({clashes} identity clashes, {rollbacks} rollbacks) since the daemon started").format(
            conflicts=integer(conflicts), clashes=integer(clashes), rollbacks=integer(rollbacks))
        problems.append((text, _(REMEDY_CONFLICTS)))
    return problems
