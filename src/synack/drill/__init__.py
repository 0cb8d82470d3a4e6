"""``synack drill``: packetdrill scripts on synack's virtual clock, and the same scripts against Linux.

A packetdrill script (``../shared/docs/packetdrill-language.md``) plays the remote peer of one TCP
connection: it injects segments, makes system calls on the stack's sockets and states which
segments the stack must send, and when. This package reads that language and runs it:

* :mod:`~synack.drill.lexer` and :mod:`~synack.drill.parser` turn a script into the typed tree of
  :mod:`~synack.drill.script` (every node with its line and column);
* :mod:`~synack.drill.engine` interprets the tree against a *backend* — the clock, the wire and
  the sockets of the stack under test — and :mod:`~synack.drill.matcher` compares what the stack
  sent with what the script expects;
* :mod:`~synack.drill.runner` is the synack backend: one :class:`~synack.core.host.Host` on a
  :class:`~synack.sim.Pipe` with a :class:`~synack.sim.Tap` for the script, on the virtual clock
  (its system calls are :mod:`~synack.drill.hostcalls`); :mod:`~synack.drill.linux` is the Linux
  backend: the kernel in a private network namespace behind a TUN device, in real time;
* :mod:`~synack.drill.report` writes the verdicts (text with the ladder diagram, HTML, JSON,
  JUnit), :mod:`~synack.drill.cli` is ``synack drill`` and :mod:`~synack.drill.pytest_plugin`
  collects ``.pkt`` files as tests.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``drill`` subcommand (the CLI module is imported only here)."""
    from synack.drill.cli import add_parser as add

    add(subparsers)
