"""The ``synack`` command line itself: every subcommand is reachable, building only the part of
the parser a subcommand needs parses it the same way, and ``--version`` tells the core's form."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import synack.core
from synack.cli import COMMANDS, build_parser, core_form


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_the_whole_parser_has_every_subcommand_and_no_other() -> None:
    assert _choices(build_parser()) == list(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_one_subcommands_parser_is_that_subcommand(name: str) -> None:
    """``build_parser(name)`` (what ``main`` builds for ``synack NAME ...``) defines NAME, and
    NAME's options the same as the whole parser does."""
    alone = build_parser(name)
    assert name in _choices(alone)

    def options(p: argparse.ArgumentParser) -> list[tuple[str, ...]]:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        return sorted(tuple(a.option_strings) for a in sub.choices[name]._actions)

    assert options(alone) == options(build_parser())


def test_analyze_does_not_import_the_simulator_or_the_tun_driver() -> None:
    heavy = ("synack.sim", "synack.tun", "synack.netcat", "synack.drill", "asyncio")
    code = ("import sys; from synack.cli import build_parser; build_parser('analyze'); "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_version_tells_the_form_of_the_core() -> None:
    out = subprocess.run([sys.executable, "-m", "synack", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith(f"synack {synack.__version__}, core: ")
    assert out.stdout.strip().endswith(core_form())
    assert ("compiled by mypyc" in out.stdout) == synack.core.compiled()


def test_an_unknown_subcommand_is_an_error_listing_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    from synack.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-command'" in err and all(f"'{n}'" in err for n in COMMANDS)
