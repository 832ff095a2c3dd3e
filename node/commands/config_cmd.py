"""`streetnode config check [PATH]`: validate and print the effective configuration."""

from __future__ import annotations

import argparse
import sys

from node import config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="check the configuration file",
                       description="Validate the configuration and print it with defaults filled in.")
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    check = csub.add_parser("check", help="validate PATH (or --config) and print the effective config")
    check.add_argument("path", nargs="?", help="configuration file (default: --config, "
                       f"${config.ENV_VAR} or {config.DEFAULT_PATH})")
    check.set_defaults(func=check_cmd)


def check_cmd(args: argparse.Namespace) -> int:
    cfg = config.load(args.path or args.config)
    sys.stdout.write(config.to_toml(cfg))
    print(f"streetnode: {cfg.source}: configuration ok ({len(cfg.sensors)} sensors)", file=sys.stderr)
    return 0
