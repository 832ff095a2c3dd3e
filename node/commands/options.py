"""``--emulate [SCENARIO]``, shared by every command that can run on emulated hardware.

The scenario is optional, so ``--emulate`` must never swallow the word after it: a word that
is a scenario name (or a ``.toml`` scenario file) is the scenario; any other word is the
command's positional argument where it has one (``streetnode read --emulate weather`` reads
sensor ``weather``), else a usage error naming the scenarios (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from node.i18n import _

EX_USAGE = 2


def scenario_names() -> list[str]:
    from drivers.emulator.scenarios import names

    return names()


def is_scenario(word: str) -> bool:
    return word.endswith(".toml") or word in scenario_names()


class EmulateAction(argparse.Action):
    """Store the scenario ("" = the configured/default one); set a non-scenario word aside."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        word = values if isinstance(values, str) else ""
        if not word or is_scenario(word):
            setattr(namespace, self.dest, word)
            return
        setattr(namespace, self.dest, "")
        if parser.get_default("_emulate_spill") is None:
            raise argparse.ArgumentError(self, unknown_scenario(word))
        namespace._emulate_word = word
        namespace._emulate_prog = parser.prog


def unknown_scenario(word: str) -> str:
    return _("unknown scenario {word!r} (choose from {scenarios}, or a .toml file)").format(
        word=word, scenarios=", ".join(scenario_names()))


def add_emulate_option(p: argparse.ArgumentParser, *, spill: str | None = None, help: str = "") -> None:
    """``--emulate [SCENARIO]`` on ``p``; ``spill``: the positional a non-scenario word goes to."""
    p.add_argument("--emulate", action=EmulateAction, nargs="?", const="", default=None,
                   metavar="SCENARIO", help=help or _("use emulated hardware playing SCENARIO (calm, "
                                                      "storm, ...; default: [emulation] scenario, else "
                                                      "calm); works without a config file"))
    p.set_defaults(_emulate_spill=spill)


def settle_emulate(args: argparse.Namespace) -> None:
    """After parsing: give a set-aside word to the command's free positional, or exit 2."""
    word = vars(args).pop("_emulate_word", None)
    prog = vars(args).pop("_emulate_prog", "streetnode")
    spill = vars(args).pop("_emulate_spill", None)
    if word is None:
        return
    if spill is not None and getattr(args, spill, None) is None:
        setattr(args, spill, word)
        args._emulate_spilled = True
        return
    print(_("usage: see {prog} --help\n{prog}: error: argument --emulate: {problem}").format(
        prog=prog, problem=unknown_scenario(word)), file=sys.stderr)
    raise SystemExit(EX_USAGE)
