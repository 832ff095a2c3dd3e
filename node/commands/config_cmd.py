"""`streetnode config check [PATH]`: validate and print the effective configuration."""

from __future__ import annotations

import argparse
import sys

from node import config
from node.i18n import _, ngettext


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help=_("check the configuration file"),
                       description=_("Validate the configuration and print it with defaults filled in."))
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    check = csub.add_parser("check", help=_("validate PATH (or --config) and print the effective config"))
    check.add_argument("path", nargs="?", help=_("configuration file (default: --config, ${env} or "
                                                 "{path})").format(env=config.ENV_VAR,
                                                                   path=config.DEFAULT_PATH))
    check.set_defaults(func=check_cmd)


def check_cmd(args: argparse.Namespace) -> int:
    cfg = config.load(args.path or args.config)
    sys.stdout.write(config.to_toml(cfg))
    count = len(cfg.sensors)
    print(ngettext("streetnode: {source}: configuration ok ({count} sensor)",
                   "streetnode: {source}: configuration ok ({count} sensors)", count).format(
                       source=cfg.source, count=count), file=sys.stderr)
    return 0
