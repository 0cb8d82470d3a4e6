"""A pytest plugin (entry point ``synack_drill``): every ``*.pkt`` file pytest comes across is a
test — one per script, run with ``synack drill``'s runner; a failure shows the mismatch, the
expected line, what happened and the ladder diagram; an UNSUPPORTED script is skipped with the
reason. Nothing but ``.pkt`` files is touched, so a project that keeps none is not affected.

Options: ``--drill-profile NAME|FILE`` (default strict), ``--drill-against synack|linux``
(default synack), ``--drill-config KEY=VALUE`` (repeatable), ``--drill-define NAME[=VALUE]``.
A script whose first comment lines contain ``drill: xfail REASON`` is expected to fail on
synack (a known gap of the stack, with the reason); it is reported as xfail and must keep failing
— when it starts to pass the test fails, so that the marker is removed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import pytest

from synack.drill import report
from synack.drill.engine import FAIL, UNSUPPORTED, Outcome
from synack.drill.profiles import ProfileError, load_profile, parse_config_value
from synack.drill.runner import Request, ladder_records, run_file

__all__ = ["DrillFailure", "DrillFile", "DrillItem"]

_XFAIL: Final = re.compile(r"^\s*//.*\bdrill:\s*xfail\b\s*(.*)$", re.MULTILINE)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("synack drill", "packetdrill scripts (*.pkt) run by synack drill")
    group.addoption("--drill-profile", default="strict", metavar="NAME|FILE",
                    help="strict (default), relaxed, or a TOML profile file")
    group.addoption("--drill-against", default="synack", choices=("synack", "linux"),
                    help="the stack under test for *.pkt files (default synack)")
    group.addoption("--drill-config", action="append", default=[], metavar="KEY=VALUE",
                    help="set a synack.core.Config field for *.pkt files")
    group.addoption("--drill-define", action="append", default=[], metavar="NAME[=VALUE]",
                    help="define NAME for #ifdef in *.pkt files")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".pkt":
        return DrillFile.from_parent(parent, path=file_path)
    return None


class DrillFailure(Exception):
    """A script failed; the outcome and the ladder's records go to the report."""

    def __init__(self, outcome: Outcome, records: list[Any] | None) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome
        self.records = records


def _request(config: pytest.Config) -> Request:
    try:
        profile = load_profile(config.getoption("--drill-profile"))
        extra: dict[str, Any] = {}
        for item in config.getoption("--drill-config"):
            key, _, value = item.partition("=")
            extra[key] = parse_config_value(key, value)
    except ProfileError as exc:
        raise pytest.UsageError(str(exc)) from None
    defines = dict(d.partition("=")[::2] for d in config.getoption("--drill-define"))
    return Request(config.getoption("--drill-against"), profile, extra, (), defines)


class DrillFile(pytest.File):
    """A ``.pkt`` file: one script, one test."""

    def collect(self) -> list[pytest.Item]:
        return [DrillItem.from_parent(self, name=self.path.stem)]


class DrillItem(pytest.Item):
    """One script run to its verdict."""

    def setup(self) -> None:
        try:
            head = "\n".join(self.path.read_text(encoding="utf-8", errors="replace").splitlines()[:30])
        except OSError:
            head = ""
        m = _XFAIL.search(head)
        if m is not None and self.config.getoption("--drill-against") == "synack":
            self.add_marker(pytest.mark.xfail(reason=m.group(1).strip() or "known gap", strict=True,
                                              raises=DrillFailure))

    def runtest(self) -> None:
        req = _request(self.config)
        records: list[Any] | None = [] if req.backend == "linux" else None
        out = run_file(str(self.path), req, records=records)
        if out.verdict == UNSUPPORTED:
            pytest.skip(f"UNSUPPORTED: {out.message}")
        if out.verdict == FAIL:
            if req.backend == "synack" and out.observations:
                records = ladder_records(str(self.path), req)
            raise DrillFailure(out, records)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, DrillFailure):
            return report.text_report(excinfo.value.outcome, excinfo.value.records)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"drill: {self.name}"
