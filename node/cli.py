"""`streetnode` command line: ``main(argv) -> int``.

Expected faults become a one-line message and a documented exit code (see
`node.errors`); a traceback is printed only with ``STREETNODE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from node import __version__, errors
from node.errors import debug_enabled  # noqa: F401  (callers import it from here)
from node.i18n import N_, _, set_language

# command -> its module under node.commands, in the order --help lists them
COMMANDS = {"config": "config_cmd", "run": "run", "status": "status", "demo": "demo"}
COMMANDS |= {name: name for name in ("diag", "scan", "read", "identify", "bundle")}  # issue #7
COMMANDS |= {"provision": "provision"}  # issue #20


# Options every command takes, before or after its name (`streetnode -c F run` = `streetnode run -c F`):
# (flags, dest, argparse keywords). Add one here and every (sub)command accepts it.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], str, dict[str, object]]] = [
    (("-c", "--config"), "config", {"metavar": "PATH", "help": N_("configuration file "
                                    "(default: $STREETNODE_CONFIG or /etc/streetnode/config.toml)")}),
    (("-v", "--verbose"), "verbose", {"action": "count", "help": N_("more log output (-vv: debug)")}),
    (("--lang",), "lang", {"metavar": "LANG", "help": N_("language of the messages: en or vi (default: "
                                                        "from LANGUAGE, LC_ALL, LC_MESSAGES, LANG)")}),
]
GLOBAL_DEFAULTS: dict[str, object] = {"config": None, "verbose": 0, "lang": None}


def add_global_options(parser: argparse.ArgumentParser, depth: int) -> None:
    """The global options on one parser; below the top their values land in ``_g<depth>_<dest>``."""
    for flags, dest, options in GLOBAL_OPTIONS:
        kw = {**options, "help": _(str(options["help"]))}
        if depth == 0:
            parser.add_argument(*flags, dest=dest, default=GLOBAL_DEFAULTS[dest], **kw)  # type: ignore[arg-type]
        else:
            parser.add_argument(*flags, dest=f"_g{depth}_{dest}", default=argparse.SUPPRESS,
                                **kw)  # type: ignore[arg-type]


def _add_globals_below(parser: argparse.ArgumentParser, depth: int = 1) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                add_global_options(child, depth)
                _add_globals_below(child, depth + 1)


def merge_global_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fold ``_g<depth>_<dest>`` into ``dest``: a later (deeper) value wins, -v counts add up."""
    for _flags, dest, kw in GLOBAL_OPTIONS:
        found = sorted(k for k in vars(args) if k.startswith("_g") and k.endswith(f"_{dest}"))
        for key in found:
            value = vars(args).pop(key)
            if kw.get("action") == "count":
                setattr(args, dest, getattr(args, dest) + value)
            else:
                setattr(args, dest, value)
    return args


def command_in(argv: list[str]) -> str | None:
    """The command ``argv`` names when only global options in their plain spellings come before it
    (``-c F``, ``--config=F``, ``-vv``, ``--lang vi``); else None, and the whole parser reads it."""
    with_value = {flag for flags, _dest, kw in GLOBAL_OPTIONS if "action" not in kw for flag in flags}
    alone = {flag for flags, _dest, kw in GLOBAL_OPTIONS if "action" in kw for flag in flags}
    words = iter(argv)
    for word in words:
        if word in with_value:
            next(words, None)
        elif not (word in alone or word.partition("=")[0] in with_value or re.fullmatch(r"-v+", word)):
            return None if word.startswith("-") else word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``command`` (a name of `COMMANDS`) that command's only: each
    command's module is imported to register it, and the daemon (`run`) keeps for years every module it
    imported; the other nine cost ~0.3 MiB of its RSS (#22)."""
    parser = argparse.ArgumentParser(
        prog="streetnode",
        description=_("Street-pole environmental node: sample sensors, buffer durably, upload to the "
                      "city."),
        epilog=_("Exit codes: 0 ok, 1 failure, 2 usage, 69 unavailable, 74 I/O, 77 permission, "
                 "78 configuration. Set STREETNODE_DEBUG=1 for tracebacks."),
    )
    parser.add_argument("--version", action="version", version=f"streetnode {__version__}",
                        help=_("show program's version number and exit"))  # argparse's default is fixed
    add_global_options(parser, 0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [COMMANDS[command]] if command in COMMANDS else COMMANDS.values():
        importlib.import_module(f"node.commands.{name}").register(sub)
    _add_globals_below(parser)
    return parser


def run_guarded(func: object, args: object, prog: str) -> int:
    """`node.errors.run_guarded` with its messages in the reader's language."""
    return errors.run_guarded(func, args, prog, translate=_)


def lang_from_argv(argv: list[str]) -> str | None:
    """``--lang X`` / ``--lang=X`` anywhere before ``--``: argparse's own texts (usage, headings)
    are translated while the parser is built, so the language is settled before parsing."""
    lang = None
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word == "--lang" and i + 1 < len(argv):
            lang = argv[i + 1]
        elif word.startswith("--lang="):
            lang = word.partition("=")[2]
    return lang


def main(argv: list[str] | None = None) -> int:
    from node.commands.options import settle_emulate

    words = sys.argv[1:] if argv is None else argv
    set_language(lang_from_argv(words))
    parser = build_parser(command_in(words))
    args = merge_global_options(parser.parse_args(argv))
    settle_emulate(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    del parser  # every command's parser and help texts: not kept for the daemon's years (#22)
    return run_guarded(args.func, args, "streetnode")


if __name__ == "__main__":
    sys.exit(main())
