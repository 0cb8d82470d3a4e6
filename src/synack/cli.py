"""The ``synack`` command line: one subcommand per job, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from synack import __version__

Handler = Callable[[argparse.Namespace], int]


# The module that defines each subcommand, in the order of ``synack --help``.
COMMANDS: dict[str, str] = {
    "decode": "synack.decode",
    "states": "synack.statediagram",
    "nc": "synack.netcat",
    "serve": "synack.netcat",
    "demo": "synack.scenarios",
    "drill": "synack.drill",
    "analyze": "synack.analyze",
}


def core_form() -> str:
    """Which form of the TCP core runs: Python (the default install) or compiled by mypyc."""
    import synack.core

    names = synack.core.compiled_modules()
    if not names:
        return "core: Python"
    import synack.analyze  # its compiled modules are counted once imported

    others = len(synack.core.compiled_modules("synack")) - len(names)
    return f"core: compiled by mypyc ({len(names)} modules of synack.core, {others} of synack.analyze)"


class _Version(argparse.Action):
    """``--version``, which imports the core to tell its form only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and the core's form, and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        print(f"synack {__version__}, {core_form()}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (``only``, a subcommand's name) the part one subcommand needs:
    ``synack analyze FILE`` does not import the simulator, the TUN driver and the drill
    runner (about 0.14 s)."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="synack",
        description="A TCP you can read: RFC 9293 in Python, on a simulated network or a TUN device.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv[0] if argv else None)
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
