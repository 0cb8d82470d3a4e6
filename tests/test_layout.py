"""The architecture as a test: the sans-IO core is a package that imports nothing outside itself
and no clock, socket, event loop, thread or randomness; functions in it fit on a screen."""

from __future__ import annotations

import ast
import importlib
import os
import pathlib
import subprocess
import sys

import pytest

import synack.core

CORE = pathlib.Path(synack.core.__file__).parent
FORBIDDEN = {"time", "socket", "asyncio", "threading", "selectors", "random"}
MODULES = sorted(CORE.glob("*.py"))
SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "synack"


def _setup_constant(name: str) -> tuple[str, ...]:
    """A tuple of strings assigned at the top of setup.py (read, not run: it calls setup())."""
    tree = ast.parse((SRC.parent.parent / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == name and node.value is not None:
                value = ast.literal_eval(node.value)
                assert isinstance(value, tuple)
                return value
    raise AssertionError(f"setup.py has no {name}")


_ANALYZE_SOURCES = _setup_constant("ANALYZE_COMPILED")


def _analyze_compiled() -> list[str]:
    """The modules outside synack.core that the compiled form compiles (setup.py)."""
    return ["synack." + rel.removesuffix(".py").replace("/", ".") for rel in _ANALYZE_SOURCES]


def _imports(path: pathlib.Path, *, typing_only: bool = False) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names), with the line: those run at import time,
    or with ``typing_only`` those under ``if TYPE_CHECKING:``, which only a type checker reads."""
    tree = ast.parse(path.read_text(), str(path))
    checking = {id(inner) for node in ast.walk(tree)
                if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"
                for stmt in node.body for inner in ast.walk(stmt)}
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (id(node) in checking) is not typing_only:
            continue
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


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_typing_only_imports_are_the_standard_library_or_mypyc_s_decorator(path: pathlib.Path) -> None:
    """Under ``if TYPE_CHECKING:`` the core may name ``mypy_extensions`` (``mypyc_attr``, which
    only mypyc reads, see synack/core/_mypyc.py), and otherwise only what it may import."""
    for line, name in _imports(path, typing_only=True):
        top = name.split(".")[0]
        allowed = top in sys.stdlib_module_names or top in {"synack", "mypy_extensions"}
        assert allowed, f"{path.name}:{line}: {name}"


def test_the_import_rule_catches_what_it_forbids(tmp_path: pathlib.Path) -> None:
    """The check above can fail: a module importing time, asyncio or the simulator is caught,
    and an import under ``if TYPE_CHECKING:`` is told apart from one that runs."""
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\nfrom synack.sim import Network\n"
                   "if TYPE_CHECKING:\n    import mypy_extensions\nelse:\n    import json\n")
    assert [name for _, name in _imports(bad)] == ["time", "asyncio", "synack.sim", "json"]
    assert [name for _, name in _imports(bad, typing_only=True)] == ["mypy_extensions"]


def test_the_core_runs_without_mypy_extensions() -> None:
    """What the type checker and mypyc read is not needed at run time: with ``mypy_extensions``
    unimportable the core imports, a Python class extends a core class, and a handshake runs."""
    code = """if True:
        import sys
        sys.modules["mypy_extensions"] = None  # import mypy_extensions now raises ImportError
        from synack.core import CongestionController, Connection, Host, State
        from synack.sim import Pipe

        class Halving(CongestionController):
            def on_timeout(self, flight, *, now, rtt):
                self.cwnd //= 2

        cc = Halving(1000)
        cc.on_timeout(0, now=0.0, rtt=None)
        assert cc.cwnd == CongestionController(1000).cwnd // 2
        pipe = Pipe(Host(["10.0.0.1"]), Host(["10.0.0.2"]))
        pipe.b.listen(80, now=0.0)
        conn = pipe.a.connect("10.0.0.2", 80, 0.0)
        pipe.run(1.0)
        assert isinstance(conn, Connection) and conn.state is State.ESTABLISHED, conn.state
        print("ok")
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_the_form_of_the_core_is_the_one_under_test() -> None:
    """scripts/test.sh runs the tests against the Python core and against the core compiled by
    mypyc, and says which with SYNACK_EXPECT_COMPILED (0 or 1): a build that silently fell back
    to Python, or a stale copy of the sources, fails here. Compiled means every module but
    ``_mypyc`` (setup.py's NOT_COMPILED)."""
    expect = os.environ.get("SYNACK_EXPECT_COMPILED")
    names = synack.core.compiled_modules()
    if expect is None:  # run by hand: whatever form is installed, consistently reported
        expect = "1" if names else "0"
    if expect == "1":
        assert synack.core.compiled()
        assert set(names) == {"synack.core"} | {f"synack.core.{p.stem}" for p in MODULES
                                                if p.stem not in {"__init__", "_mypyc"}}
        # The build carries a copy of the sources it compiled: they must be these (a stale
        # build/compiled is rebuilt by scripts/build-compiled.sh, never run).
        sources = pathlib.Path(__file__).resolve().parent.parent / "src" / "synack" / "core"
        stale = [p.name for p in sorted(sources.glob("*.py"))
                 if not (CORE / p.name).is_file() or (CORE / p.name).read_bytes() != p.read_bytes()]
        assert not stale, f"{CORE} was compiled from other sources than {sources}: {stale}"
        # Outside the core: the capture analyzer's one pass and the pcap reader (setup.py).
        package = CORE.parent
        others = _analyze_compiled()
        for name in others:
            importlib.import_module(name)
        assert set(others) <= set(synack.core.compiled_modules("synack")), others
        stale = [rel for rel in _ANALYZE_SOURCES if (package / rel).read_bytes() != (SRC / rel).read_bytes()]
        assert not stale, f"{package} was compiled from other sources than {SRC}: {stale}"
    else:
        assert expect == "0", f"SYNACK_EXPECT_COMPILED={expect!r}"
        assert not synack.core.compiled() and names == ()
        assert synack.core.compiled_modules("synack") == ()


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
