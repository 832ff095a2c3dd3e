"""`streetnode bundle [PATH]`: a support archive for the city's operators (secrets redacted)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.commands.diag import FIELD_EPILOG, add_field_options, context_from_args
from node.errors import StorageError
from node.i18n import _, english


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bundle", help=_("write a support archive (diag, config, logs, versions)"),
                       description=_("Write a tar.gz with the diag report, the effective configuration "
                                     "(secrets redacted), recent logs, buffer statistics and versions."),
                       epilog=_(FIELD_EPILOG))
    p.add_argument("path", nargs="?",
                   help=_("archive to write (default: ./streetnode-bundle-NODE-TIME.tar.gz)"))
    add_field_options(p, spill="path")
    p.set_defaults(func=bundle_cmd)


def bundle_cmd(args: argparse.Namespace) -> int:
    from node.diag.bundle import default_name, write_bundle

    with english():  # the archive is for the city's operators: English, like --json
        ctx = context_from_args(args, require_config=False)
        path = Path(args.path) if args.path else Path(default_name(ctx, ctx.wall()))
        if path.is_dir():
            path = path / default_name(ctx, ctx.wall())
        try:
            out, code = write_bundle(ctx, path)
        except OSError as e:
            failure = e
        else:
            failure = None
    if failure is not None:
        raise StorageError(_("bundle: cannot write {path}: {reason}").format(
            path=path, reason=failure.strerror or failure)) from None
    verdict = {0: _("all checks passed"), 1: _("with warnings"), 2: _("with failures")}[code]
    print(_("{path}  (diag: {verdict}); send this file to the city's operators").format(
        path=out, verdict=verdict), file=sys.stderr)
    print(out)
    return 0
