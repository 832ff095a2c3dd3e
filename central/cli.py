"""`streetnode-central` command line: ``main(argv) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from central import __version__

# subcommand modules under central.commands, in the order --help lists them
COMMAND_MODULES: list[str] = ["serve_cmd", "node_cmd", "account_cmd", "config_cmd"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streetnode-central",
        description="Reference central receiver: verifies, de-duplicates and stores node uploads.",
        epilog="Exit codes: 0 ok, 1 failure, 2 usage, 69 unavailable, 78 configuration (also: database "
        "schema newer than this program). "
        "Set STREETNODE_DEBUG=1 for tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"streetnode-central {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"central.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from node.errors import run_guarded

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_guarded(args.func, args, "streetnode-central")


if __name__ == "__main__":
    sys.exit(main())
