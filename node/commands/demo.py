"""`streetnode demo [--duration S]`: central + node on emulated hardware through a storm and an outage."""

from __future__ import annotations

import argparse
import sys

from node.i18n import _


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=_("one-command demo: emulated node, embedded central, storm, outage"),
                       description=_("Start a real central on a free loopback port with a temporary "
                                     "store, run the real agent on emulated hardware through a compressed "
                                     "storm, take the central down and back, and check every sampled "
                                     "reading arrived exactly once (exit 0)."))
    p.add_argument("--duration", type=float, default=60.0, metavar="SECONDS",
                   help=_("length of the run (default 60; at least 15)"))
    p.set_defaults(func=demo_cmd)


def demo_cmd(args: argparse.Namespace) -> int:
    from node import logsetup
    from node.demo import render, run_demo

    if args.duration < 15:
        print(_("streetnode: demo: --duration: expected at least 15 seconds"), file=sys.stderr)
        return 2
    logsetup.setup("error", 0)
    summary = run_demo(args.duration, sys.stdout)
    print(render(summary))
    return 0 if summary.exactly_once else 1
