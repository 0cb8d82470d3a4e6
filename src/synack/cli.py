"""The ``synack`` command line: one subcommand per job, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from synack import __version__

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synack",
        description="A TCP you can read: RFC 9293 in Python, on a simulated network or a TUN device.",
    )
    parser.add_argument("--version", action="version", version=f"synack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from synack import analyze, decode, drill, netcat, scenarios, statediagram

    decode.add_parser(sub)
    statediagram.add_parser(sub)
    netcat.add_parser(sub)
    scenarios.add_parser(sub)
    drill.add_parser(sub)
    analyze.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
