"""The architecture as a test: the sans-IO core is a package that imports nothing outside itself
and no clock, socket, event loop, thread or randomness; functions in it fit on a screen."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

import synack.core

CORE = pathlib.Path(synack.core.__file__).parent
FORBIDDEN = {"time", "socket", "asyncio", "threading", "selectors", "random"}
MODULES = sorted(CORE.glob("*.py"))


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names), with the line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}:{node.lineno}: relative import"
            out.append((node.lineno, node.module or ""))
    return out


def test_the_core_has_the_modules_of_the_architecture() -> None:
    names = {p.stem for p in MODULES}
    assert {"wire", "buffers", "timers", "congestion", "recovery", "connection", "host", "records"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_imports_only_core_and_the_standard_library_minus_io(path: pathlib.Path) -> None:
    for line, name in _imports(path):
        top = name.split(".")[0]
        where = f"{path.name}:{line}: import {name}"
        assert top not in FORBIDDEN, f"{where}: the core must not read a clock, do I/O or draw randomness"
        if top == "synack":
            assert name == "synack.core" or name.startswith("synack.core."), f"{where}: outside the core"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", f"{where}: not the standard library"


def test_the_import_rule_catches_what_it_forbids(tmp_path: pathlib.Path) -> None:
    """The check above can fail: a module importing time, asyncio or the simulator is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\nfrom synack.sim import Network\n")
    assert [name for _, name in _imports(bad)] == ["time", "asyncio", "synack.sim"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_function_in_the_core_is_longer_than_80_lines(path: pathlib.Path) -> None:
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > 80]
    assert not long, f"{path.name}: {', '.join(long)}"


def test_connection_module_stays_under_1600_lines() -> None:
    assert len((CORE / "connection.py").read_text().splitlines()) < 1600


def test_core_exports_a_curated_api() -> None:
    for name in synack.core.__all__:
        assert hasattr(synack.core, name), name
    assert "Connection" in synack.core.__all__ and "Host" in synack.core.__all__
